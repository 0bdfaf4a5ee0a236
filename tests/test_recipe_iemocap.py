"""egs/iemocap: a fixture IEMOCAP_full_release (Session1-2: sentences/wav, dialog/EmoEvaluation,
dialog/transcriptions) through local/data.sh and ./run.sh."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

LABELS = {"ang": "angry", "exc": "happy", "hap": "happy", "neu": "neutral", "sad": "sad"}
NAMES = {"ang": "Anger", "exc": "Excited", "hap": "Happiness", "neu": "Neutral", "sad": "Sadness",
         "fru": "Frustration", "xxx": "Other"}


def _spk(row: TableRow) -> str:
    utt = row.key.split("-", 1)[1]
    return f"{utt[:5]}_{utt.rsplit('_', 1)[1][0]}"


def _dims(i: int) -> tuple[str, str, str]:
    """(valence, arousal, dominance) as EmoEvaluation writes them."""
    return f"{1 + i % 4}.5000", f"{2 + i % 3}.0000", f"{3 + i % 2}.5000"


def _release(root: Path, per_speaker: int = 3
             ) -> tuple[list[TableRow], TableRow, dict[str, str]]:
    """Sessions 1 and 2 (EmoBox's folds 1 and 2), ``per_speaker`` listed utterances of each
    actor, their dialogs' EmoEvaluation and transcription files; quirks: a listed wav missing,
    an unlisted utterance of label fru and one of xxx (no majority) per session, macOS ``._``
    resource files beside a wav and an EmoEvaluation file, an EmoEvaluation file with CRLF
    line ends, the per-evaluator Categorical/ files in their own folder, a transcription line
    of a turn without a wav."""
    rows = cr.pick(cr.table("iemocap"), _spk, per_speaker=per_speaker, folds=["fold1", "fold2"])
    absent = rows.pop()
    dialogs: dict[str, list[tuple[str, str]]] = defaultdict(list)  # dialog dir -> (utt, label)
    for row in rows + [absent]:
        dialogs[row.wav.rsplit("/", 1)[0]].append((row.key.split("-", 1)[1], row.emotion))
    extras = {}  # unlisted wav -> its label
    for session in ("Session1", "Session2"):
        first = min(d for d in dialogs if d.startswith(session))
        for n, label in enumerate(("fru", "xxx")):
            utt = f"{first.rsplit('/', 1)[1]}_M9{n}{n}"
            dialogs[first].append((utt, label))
            extras[f"{first}/{utt}.wav"] = label
    for i, row in enumerate(rows):
        cr.write_audio(root / row.wav, seconds=0.4, seed=i)
    for i, rel in enumerate(extras):
        cr.write_audio(root / rel, seconds=0.3, seed=50 + i)
    for i, (wavdir, utts) in enumerate(sorted(dialogs.items())):
        session, dialog = wavdir.split("/")[0], wavdir.rsplit("/", 1)[1]
        evals = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        texts = [f"{dialog}_MXX0 [000.1000-000.9000]: [LAUGHTER] Okay."]
        for j, (utt, label) in enumerate(utts):
            v, a, d = _dims(j)
            start = 2.0 * j + 1
            evals += [f"[{start:.4f} - {start + 1.5:.4f}]\t{utt}\t{label}\t[{v}, {a}, {d}]",
                      f"C-E2:\t{NAMES[label]};\t()", f"C-E3:\t{NAMES[label]};\t()",
                      f"C-F1:\tFrustration; {NAMES[label]};\t(curious, polite)",
                      f"A-E3:\tval {v[0]}; act {a[0]}; dom  {d[0]};\t()", ""]
            texts.append(f"{utt} [{start:08.4f}-{start + 1.5:08.4f}]: Utterance {j} of {dialog}.")
        ending = "\r\n" if i == 0 else "\n"
        evaldir = root / session / "dialog" / "EmoEvaluation"
        (evaldir / "Categorical").mkdir(parents=True, exist_ok=True)
        (evaldir / f"{dialog}.txt").write_bytes(ending.join(evals).encode())
        (evaldir / "Categorical" / f"{dialog}_e2_cat.txt").write_text(
            "".join(f"{utt} :Neutral state; ()\n" for utt, _ in utts))
        transdir = root / session / "dialog" / "transcriptions"
        transdir.mkdir(parents=True, exist_ok=True)
        (transdir / f"{dialog}.txt").write_text("\n".join(texts) + "\n")
    # AppleDouble files of a macOS copy: binary, not UTF-8
    first = rows[0].wav.rsplit("/", 1)
    (root / first[0] / f"._{first[1]}").write_bytes(b"\x00\x05\x16\x07\xff\xfe" * 20)
    dialog = first[0].rsplit("/", 1)[1]
    (root / "Session1" / "dialog" / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(b"\xff" * 9)
    return rows, absent, extras


def test_iemocap_data_and_emobox_folds(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    rows, absent, extras = _release(root)
    proc = cr.run_data("iemocap", tmp_path / "data", root, "--dev_speakers 1")
    assert f"{len(rows)} utterances of 4 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    text, dims = all_.table("text"), all_.table("utt2dim")
    listeners = all_.table("utt2listener_emo")
    for row in rows:
        utt, name = key2utt[row.key], row.key.split("-", 1)[1]
        assert all_.utt2emo[utt] == LABELS[row.emotion]
        assert all_.utt2spk[utt] == _spk(row) and utt.startswith(f"{_spk(row)}-")
        assert all_.table("utt2gender")[utt] == name[-4].lower()
        assert text[utt].startswith("Utterance ") and text[utt].endswith(f"{name[:-5]}.")
        aro, val, dom = dims[utt].split()  # EmoEvaluation's [V, A, D] reordered
        assert (val, aro, dom) in {_dims(j) for j in range(12)}
        assert aro.endswith(".0000") and val.endswith(".5000")
        cat = {**LABELS, "exc": "excited"}[row.emotion]  # the evaluators' category
        assert listeners[utt] == f"E2:{cat} E3:{cat} F1:frustrated F1:{cat}"
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("iemocap")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra == {rel: f"label {label}: not one of EmoBox's 4 classes"
                     for rel, label in extras.items()}
    assert {kind for kind, _, _ in lines} == {"missing", "extra"}  # no ._ file, none skipped
    # EmoBox's fold N tests Session N: speaker-independent
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)


def test_iemocap_sessions_speakers_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _, _ = _release(root, per_speaker=2)
    cr.run_data("iemocap", tmp_path / "loso", root, "--protocol loso --dev_speakers 1")
    for n in (1, 2):
        test = DataDir(tmp_path / "loso" / "folds" / f"session{n}" / "test")
        assert set(test.utt2spk.values()) == {f"Ses0{n}_F", f"Ses0{n}_M"}
        assert set(test.table("utt2key").values()) == {r.key for r in rows
                                                       if r.fold == f"fold{n}"}
    cr.run_data("iemocap", tmp_path / "lospk", root, "--protocol lospk")
    cr.check_loso(tmp_path / "lospk")
    cr.run_to_stage2("iemocap", tmp_path, root, "--dev_speakers 1")
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_iemocap_metadata_errors(tmp_path):
    root = tmp_path / "release"
    rows, _, _ = _release(root, per_speaker=1)
    wavdir, utt = rows[0].wav[:-4].rsplit("/", 1)
    dialog = wavdir.rsplit("/", 1)[1]
    (root / "Session1" / "dialog" / "transcriptions" / f"{dialog}.txt").unlink()
    proc = cr.run_data("iemocap", tmp_path / "data", root, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"transcriptions file of dialog {dialog} not found" in proc.stderr
    evals = root / "Session1" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
    evals.write_text(f"[1.0 - 2.0] {utt} neu\n")
    proc = cr.run_data("iemocap", tmp_path / "data", root, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{evals}:1: not '[start - end] utt label [V, A, D]'" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("iemocap", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
