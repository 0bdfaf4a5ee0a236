"""egs/subesco: a fixture release (SUBESCO/<F|M>_<nn>_<NAME>_S_<s>_<EMOTION>_<take>.wav)
through local/data.sh and ./run.sh."""

from __future__ import annotations

from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

BRACKET = "F_02_MONIKA_S_2_SURPRISE_3].wav"  # the release's one misnamed file


def _spk(row: TableRow) -> str:
    return row.wav[:4]


def _pick(folds: list[str] | None = None) -> list[TableRow]:
    """Two rows per speaker, of two emotions; the bracketed file when its fold is wanted."""
    table = cr.table("subesco")
    keep = cr.pick(table, _spk, per_speaker=1, folds=folds)  # first rows: ANGRY
    emo = ("DISGUST", "FEAR", "HAPPY", "NEUTRAL", "SAD", "SURPRISE")
    keep += [r for r in table if (folds is None or r.fold in folds) and r.wav.endswith(
        f"_S_3_{emo[int(r.wav[2:4]) % 6]}_2.wav")]
    keep += [r for r in table if r.wav == BRACKET and (folds is None or r.fold in folds)]
    return keep


def _release(root: Path, folds: list[str] | None = None) -> tuple[list[TableRow], TableRow]:
    """All files in SUBESCO/; quirks: the bracketed name, a 24-bit stereo 48 kHz file, an
    upper-case extension, a listed file left out, a second copy, an unlisted file."""
    rows = _pick(folds)
    absent = rows.pop(1)
    for i, row in enumerate(rows):
        path = root / "SUBESCO" / row.wav
        if i == 0:
            cr.write_audio(path, seconds=0.3, sr=48000, channels=2, subtype="PCM_24", seed=i)
        elif i == 2:
            cr.write_audio(path.with_suffix(".WAV"), seconds=0.3, sr=44100, seed=i, fmt="WAV")
        else:
            cr.write_audio(path, seconds=0.3, sr=44100, seed=i)
    cr.write_audio(root / "SUBESCO copy" / rows[3].wav, seconds=0.3, seed=3)
    cr.write_audio(root / "SUBESCO" / "M_01_BASHIR_S_11_ANGRY_1.wav", seconds=0.3, seed=9)
    return rows, absent


def test_subesco_data_and_emobox_folds(tmp_path):
    root = tmp_path / "subesco release"
    rows, absent = _release(root)
    assert any(r.wav == BRACKET for r in rows)
    proc = cr.run_data("subesco", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 20 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    labels = {"fear": "fearful", "surprise": "surprised"}
    for row in rows:
        utt, spk = key2utt[row.key], _spk(row)
        assert all_.utt2emo[utt] == labels.get(row.emotion, row.emotion)
        assert all_.utt2spk[utt] == spk and utt.startswith(f"{spk}-")
        assert all_.table("utt2gender")[utt] == spk[0].lower()
    assert not all_.has("text")
    assert len(set(all_.utt2emo.values())) == 7
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("subesco")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra == {f"SUBESCO copy/{rows[3].wav}": f"second copy of SUBESCO/{rows[3].wav}",
                     "SUBESCO/M_01_BASHIR_S_11_ANGRY_1.wav": "not listed in the table"}
    # EmoBox's SUBESCO folds are speaker-independent (4 test actors per fold)
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)


def test_subesco_loso_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _ = _release(root, folds=["fold1", "fold2"])  # 2 folds keep stage 2 short
    cr.run_data("subesco", tmp_path / "loso", root, "--protocol loso --dev_speakers 1")
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("subesco", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_subesco_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("subesco", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
