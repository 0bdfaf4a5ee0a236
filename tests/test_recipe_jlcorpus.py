"""egs/jlcorpus: a fixture release (Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/
<speaker>_<emotion>_<n><a|b>_<1|2>.wav with a .txt prompt beside each) through local/data.sh
and ./run.sh."""

from __future__ import annotations

from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

RAW = "Raw JL corpus (unchecked and unannotated)"
EMOTIONS = ("angry", "anxious", "apologetic", "assertive", "concerned", "encouraging",
            "excited", "happy", "neutral", "sad")
SPEAKERS = ("female1", "female2", "male1", "male2")


def _spk(row: TableRow) -> str:
    return row.key.split("-")[1]


def _pick(folds: list[str] | None = None) -> list[TableRow]:
    """Three rows per speaker, of three different emotions (all ten over the speakers)."""
    keep = []
    for row in cr.table("jlcorpus"):
        if folds is not None and row.fold not in folds:
            continue
        i = SPEAKERS.index(_spk(row))
        wanted = {EMOTIONS[(3 * i + j) % 10] for j in range(3)}
        if row.emotion in wanted and row.key.endswith("-1a-1"):
            keep.append(row)
    return keep


def _prompt(row: TableRow) -> str:
    return f"Prompt of {row.key.split('-', 1)[1]}, read aloud"


def _release(root: Path, folds: list[str] | None = None) -> tuple[list[TableRow], TableRow,
                                                                   TableRow]:
    """44.1 kHz files with their .txt prompts; quirks: a second tree under a lower-case
    folder name, a prompt with a BOM and CRLF, a file without its prompt, a listed file left
    out, an unlisted file, a 24-bit stereo file."""
    rows = _pick(folds)
    absent, unprompted = rows.pop(), rows.pop(0)
    for i, row in enumerate(rows + [unprompted]):
        path = root / row.wav
        cr.write_audio(path, seconds=0.3, sr=44100, channels=2 if i == 1 else 1,
                       subtype="PCM_24" if i == 1 else "PCM_16", seed=i)
        if row is unprompted:
            continue
        if i == 2:
            path.with_suffix(".txt").write_bytes(b"\xef\xbb\xbf" + _prompt(row).encode()
                                                 + b"\r\n")
        else:
            path.with_suffix(".txt").write_text(_prompt(row) + "\n")
    (root / RAW / "Format_Intro.txt").write_text(
        "(Gender)(speaker.ID)_(Emotion)_(Sentence.ID)(session.ID)\n")
    twin = rows[3].wav.replace(RAW, RAW.lower())
    cr.write_audio(root / twin, seconds=0.3, sr=44100, seed=3)
    unlisted = f"{RAW}/JL(wav+txt)/female1_angry_16a_1.wav"
    cr.write_audio(root / unlisted, seconds=0.3, sr=44100, seed=7)
    return rows, absent, unprompted


def test_jlcorpus_data_emobox_folds_and_loso(tmp_path):
    root = tmp_path / "jl corpus"
    rows, absent, unprompted = _release(root)
    proc = cr.run_data("jlcorpus", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 4 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    assert {all_.utt2emo[key2utt[r.key]] for r in rows} >= set(EMOTIONS) - {unprompted.emotion,
                                                                          absent.emotion}
    for row in rows:
        utt, spk = key2utt[row.key], _spk(row)
        assert all_.utt2emo[utt] == row.emotion
        assert all_.utt2spk[utt] == spk and utt.startswith(f"{spk}-")
        assert all_.table("utt2gender")[utt] == ("f" if spk.startswith("female") else "m")
        assert all_.table("text")[utt] == _prompt(row)
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("jlcorpus")) - len(rows) - 1
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra == {rows[3].wav.replace(RAW, RAW.lower()): f"second copy of {rows[3].wav}",
                     f"{RAW}/JL(wav+txt)/female1_angry_16a_1.wav": "not listed in the table"}
    skipped = [why for kind, _, why in lines if kind == "skipped"]
    assert len(skipped) == 1 and "no transcript" in skipped[0]
    # EmoBox's 4 folds are speaker-independent: each tests one actor
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)
    cr.run_data("jlcorpus", tmp_path / "loso", root, "--protocol loso")
    cr.check_loso(tmp_path / "loso")


def test_jlcorpus_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _, _ = _release(root, folds=["fold1", "fold2"])  # 2 folds keep stage 2 short
    # one training actor per fold here: dev is an utterance split (--dev_speakers 0)
    cr.run_to_stage2("jlcorpus", tmp_path, root, "--dev_speakers 0")
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)
