"""egs/tess: a fixture release in the Kaggle layout (TESS Toronto emotional speech set data/
OAF_Fear/OAF_back_fear.wav, ...) through local/data.sh and ./run.sh."""

from __future__ import annotations

from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

TOP = "TESS Toronto emotional speech set data"
# the Kaggle copy's folder names (sic: case and spelling vary)
FOLDERS = {("OAF", "fear"): "OAF_Fear", ("OAF", "ps"): "OAF_Pleasant_surprise",
           ("OAF", "sad"): "OAF_Sad", ("YAF", "ps"): "YAF_pleasant_surprised"}
LABELS = {"fear": "fearful", "ps": "surprised"}


def _folder(row: TableRow) -> str:
    spk, _, emo = row.wav[:-4].split("_")
    return FOLDERS.get((spk, emo), f"{spk}_{emo}")


def _release(root: Path, per_class: int = 1, sr: int = 24414
             ) -> tuple[list[TableRow], TableRow]:
    """``per_class`` tested and never-tested files per speaker and emotion at ``sr`` (TESS's
    24414 Hz by default); quirks: OAF_bite_neutral.wav misnamed OA_bite_neutral.wav (as in
    public copies), and a nested second copy of the archive holding two of the files."""
    table = cr.table("tess")
    misnamed = next(r for r in table if r.wav == "OAF_bite_neutral.wav")
    rows = cr.pick([r for r in table if r != misnamed],
                   lambda r: (r.key.split("-")[1], r.emotion, r.fold == "-"), per_speaker=per_class)
    for i, row in enumerate(rows):
        cr.write_audio(root / TOP / _folder(row) / row.wav, seconds=0.4, sr=sr, seed=i)
    cr.write_audio(root / TOP / "OAF_neutral" / "OA_bite_neutral.wav", seconds=0.4, sr=sr)
    for row in rows[:2]:
        cr.write_audio(root / TOP.lower() / TOP / _folder(row) / row.wav, seconds=0.4, sr=sr,
                       seed=7)
    return rows, misnamed


def test_tess_data_and_emobox_fold(tmp_path):
    root = tmp_path / "tess release"
    rows, misnamed = _release(root, per_class=2)
    proc = cr.run_data("tess", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 2 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    for row in rows:
        utt = key2utt[row.key]
        spk, word, _ = row.wav[:-4].split("_")
        assert all_.utt2emo[utt] == LABELS.get(row.emotion, row.emotion)
        assert all_.utt2spk[utt] == spk and utt.startswith(f"{spk}-")
        assert all_.table("utt2gender")[utt] == "f"
        assert all_.table("text")[utt] == f"Say the word {word}"
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert misnamed.wav in missing and len(missing) == len(cr.table("tess")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra.pop(f"{TOP}/OAF_neutral/OA_bite_neutral.wav") == (
        "OAF_bite_neutral.wav under another name in this copy; rename it to "
        "OAF_bite_neutral.wav to use it")
    assert len(extra) == 2 and all(why.startswith("second copy of ") for why in extra.values())
    assert {f.rsplit("/", 1)[-1] for f in extra} == {r.wav for r in rows[:2]}
    # EmoBox's single fold splits TESS by utterance (both speakers in train and test)
    cr.check_folds(tmp_path / "data", rows, speaker_independent=False)


def test_tess_loso_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _ = _release(root)  # the release's 24414 Hz through the feature dump
    cr.run_data("tess", tmp_path / "loso", root, "--protocol loso")
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("tess", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_tess_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("tess", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
