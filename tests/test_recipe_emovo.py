"""egs/emovo: a fixture release (EMOVO/<actor>/<emo>-<actor>-<sentence>.wav) through
local/data.sh and ./run.sh (EMOVO, Costantini et al. 2014)."""

from __future__ import annotations

from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

LABELS = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fearful", "rab": "angry",
          "sor": "surprised", "tri": "sad"}


def _actor(row: TableRow) -> str:
    return row.key.split("-")[2]


def _release(root: Path, folds: list[str] | None = None):
    """Two files (sentences b1 and n1) of each actor, as the zip unpacks them under EMOVO/ (the
    table's paths start at the actor folders: files are found by name); quirks: the release's
    48 kHz stereo, a listed file left out, macOS ._ resource-fork twins (ignored)."""
    rows = cr.pick([r for r in cr.table("emovo") if r.key.split("-")[3] in ("b1", "n1")],
                   _actor, per_speaker=2, folds=folds)
    absent = rows.pop()
    for i, row in enumerate(rows):
        path = cr.write_audio(root / "EMOVO" / row.wav, seconds=0.3, sr=48000, channels=2,
                              seed=i)
        if i == 0:
            path.with_name(f"._{path.name}").write_bytes(b"\x00\x05\x16\x07")
    return rows, absent


def test_emovo_data_and_emobox_folds(tmp_path):
    root = tmp_path / "emovo release"
    rows, absent = _release(root)
    proc = cr.run_data("emovo", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 6 speakers" in proc.stdout
    assert f"{len(rows)} found by file name" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    text = all_.table("text")
    for row in rows:
        utt, actor = key2utt[row.key], _actor(row)
        assert all_.utt2emo[utt] == LABELS[row.emotion]
        assert all_.utt2spk[utt] == actor and utt.startswith(f"{actor}-")
        assert all_.table("utt2gender")[utt] == actor[0]
        assert text[utt] == {"b1": "Gli operai si alzano presto.",
                             "n1": "La casa forte vuole col pane."}[row.key.split("-")[3]]
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("emovo")) - len(rows)
    assert not [line for line in lines if line[0] != "missing"]
    # EmoBox's 6 folds test one actor each: speaker-independent
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)
    for fold in (tmp_path / "data" / "folds").iterdir():
        assert len(set(DataDir(fold / "test").utt2spk.values())) == 1


def test_emovo_loso_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _ = _release(root, folds=["fold1", "fold2", "fold3"])  # 3 actors keep stage 2 short
    cr.run_data("emovo", tmp_path / "loso", root, "--protocol loso")
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("emovo", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)
    assert sorted(p.name for p in (tmp_path / "data" / "folds").iterdir()) == [
        "fold1", "fold2", "fold3"]


def test_emovo_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("emovo", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
