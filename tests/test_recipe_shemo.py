"""egs/shemo: a fixture release (female/F01A01.wav, male/M01A01.wav, shemo.json) through
local/data.sh and ./run.sh (ShEMO, Mohamad Nezami et al. 2019)."""

from __future__ import annotations

import json
from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

SPEAKERS = [f"{g}{n:02d}" for g in "FM" for n in range(1, 6)]


def _spk(row: TableRow) -> str:
    return row.key.split("-")[1][:3]


def _text(i: int) -> str:
    return f"متن آزمایشی شماره {i} می\u200cخوانم"  # "test text number i, I read"


def _release(root: Path, layout: str = "dict", folds: list[str] | None = None):
    """Two clips of each of 10 speakers at 44.1 kHz and their shemo.json entries; quirks: a
    transcript opening with a BOM (as in the real file), a clip the json lacks (F01S23, one of
    the 162 of ShEMO issue #2), a json entry without a clip (F01N12), a listed clip left out."""
    rows = cr.pick([r for r in cr.table("shemo") if _spk(r) in SPEAKERS], _spk, per_speaker=2,
                   folds=folds)
    meta = {}
    for i, row in enumerate(rows):
        cr.write_audio(root / row.wav, seconds=0.3, sr=44100, seed=i)
        name = Path(row.wav).stem
        meta[name] = {"speaker_id": name[:3],
                      "gender": "female" if name[0] == "F" else "male",
                      "emotion": row.emotion, "transcript": ("\ufeff" if i == 1 else "")
                      + _text(i), "ipa": f"motne ɒzmɒjeʃi {i}"}
    meta["F01N12"] = dict(meta[Path(rows[0].wav).stem], emotion="neutral")
    absent = rows.pop()
    (root / absent.wav).unlink()
    cr.write_audio(root / "female" / "F01S23.wav", seconds=0.3, sr=44100, seed=99)
    if layout == "list":
        meta = [{"id": k, **{f: v for f, v in e.items() if f != "speaker_id"}}
                for k, e in meta.items()]
    (root / "shemo.json").write_text(json.dumps(meta, indent=4))
    return rows, absent


def test_shemo_data_and_emobox_fold(tmp_path):
    root = tmp_path / "shemo"
    rows, absent = _release(root)
    proc = cr.run_data("shemo", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 10 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    text = all_.table("text")
    for i, row in enumerate(rows):
        utt, spk = key2utt[row.key], _spk(row)
        assert all_.utt2emo[utt] == row.emotion  # EmoBox's ShEMO labels are sertk's words
        assert all_.utt2spk[utt] == spk and utt.startswith(f"{spk}-")
        assert all_.table("utt2gender")[utt] == spk[0].lower()
        assert text[utt] == _text(i)  # the BOM is dropped
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("shemo")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert list(extra) == ["female/F01S23.wav"] and "not in shemo.json" in extra[
        "female/F01S23.wav"]
    # EmoBox's one fold splits ShEMO by utterance: speakers are in both train and test
    assert any(r.fold == "fold1" for r in rows)
    cr.check_folds(tmp_path / "data", rows, speaker_independent=False)


def test_shemo_spk5fold_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _ = _release(root)
    cr.run_data("shemo", tmp_path / "k5", root, "--protocol spk5fold --dev_speakers 2")
    folds = tmp_path / "k5" / "folds"
    assert sorted(p.name for p in folds.iterdir()) == [f"fold{k}" for k in range(1, 6)]
    for k in range(1, 6):
        want = {f"F{k:02d}", f"M{k:02d}"} & {_spk(r) for r in rows}
        parts = {s: set(DataDir(folds / f"fold{k}" / s).utt2spk.values())
                 for s in ("train", "dev", "test")}
        assert parts["test"] == want and not (parts["train"] | parts["dev"]) & want
        assert len(parts["dev"]) == 2 and not parts["train"] & parts["dev"]
    cr.run_to_stage2("shemo", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_shemo_metadata(tmp_path):
    # the older shemo.json layout: a list of entries with an "id" and no speaker_id
    rows, _ = _release(tmp_path / "old", layout="list")
    proc = cr.run_data("shemo", tmp_path / "data", tmp_path / "old")
    assert f"{len(rows)} utterances of 10 speakers" in proc.stdout
    (tmp_path / "old" / "shemo.json").write_text('{"F01A01": {"gender": "female"')
    proc = cr.run_data("shemo", tmp_path / "data2", tmp_path / "old", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "shemo.json: not a UTF-8 JSON file" in proc.stderr
    (tmp_path / "old" / "shemo.json").unlink()
    proc = cr.run_data("shemo", tmp_path / "data3", tmp_path / "old", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "shemo.json not found" in proc.stderr and "pariajm" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("shemo", tmp_path / "data4", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
