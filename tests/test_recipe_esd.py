"""egs/esd: a fixture release (<spk>/<Emotion>/<split>/<spk>_<n>.wav + <spk>/<spk>.txt)
through local/data.sh and ./run.sh."""

from __future__ import annotations

from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

ROOT = "Emotion Speech Dataset"
FEMALE = {"0001", "0002", "0003", "0007", "0009", "0015", "0016", "0017", "0018", "0019"}
SPLITS = ("train", "evaluation", "test")


def _spk(row: TableRow) -> str:
    return row.key.split("-")[1]


def _pick(folds: list[str] | None = None) -> list[TableRow]:
    """Two rows per speaker: its first Neutral one and one of another emotion."""
    def wanted(row: TableRow) -> bool:
        return int(row.key[-6:]) in (1, 351 + 350 * (int(_spk(row)) % 4))

    return [r for r in cr.table("esd") if (folds is None or r.fold in folds) and wanted(r)]


def _text(row: TableRow) -> str:
    if int(_spk(row)) <= 10:
        return f"打远一看，它们的确很是美丽 {row.key[-6:]}"
    return f"Author of the danger trail café {row.key[-6:]}"


def _release(root: Path, folds: list[str] | None = None) -> tuple[list[TableRow], TableRow,
                                                                   TableRow]:
    """Quirks: transcripts in UTF-16 (BOM), GB2312, Latin-1 and UTF-8 with CRLF, a line
    without tabs, a stereo 24-bit 48 kHz file, an upper-case extension, a listed file left
    out, a file without a transcript line, a second copy, an unlisted file."""
    rows = _pick(folds)
    absent, untranscribed = rows.pop(), rows.pop(0)
    base = root / ROOT
    by_spk: dict[str, list[TableRow]] = {}
    for i, row in enumerate(rows + [untranscribed]):
        spk, name = _spk(row), row.wav.split("/")[-1]
        by_spk.setdefault(spk, []).append(row)
        # EmoBox's flat <spk>/<Emotion>/ layout, or a train/evaluation/test subfolder
        path = base / spk / row.emotion / (SPLITS[i % 3] if i % 3 else "") / name
        if i == 0:
            cr.write_audio(path, seconds=0.4, sr=48000, channels=2, subtype="PCM_24", seed=i)
        elif i == 1:
            cr.write_audio(path.with_suffix(".WAV"), seconds=0.4, seed=i, fmt="WAV")
        else:
            cr.write_audio(path, seconds=0.3, seed=i)
    for spk, got in by_spk.items():
        lines = [f"{r.wav.split('/')[-1][:-4]}\t{_text(r)}\t"
                 f"{'中立' if int(spk) <= 10 else r.emotion}" for r in got if r != untranscribed]
        if int(spk) % 4 == 3 and len(lines) > 1:  # a line with spaces for tabs
            lines[1] = lines[1].replace("\t", " ")
        text = "\r\n".join(lines) + "\r\n"
        if int(spk) <= 10:
            data = text.encode("utf-16") if int(spk) % 2 else text.encode("gb2312")
        else:
            data = text.encode("latin-1") if int(spk) % 2 else text.encode("utf-8")
        (base / spk / f"{spk}.txt").write_bytes(data)
    (base / "ReadMe.txt").write_text("0001: Chinese Female\n")
    cr.write_audio(root / "ESD copy" / rows[3].wav.split("/")[-1], seconds=0.3, seed=3)
    cr.write_audio(base / "0011" / "Sad" / "0011_001799.wav", seconds=0.3, seed=9)
    return rows, absent, untranscribed


def test_esd_data_and_emobox_folds(tmp_path):
    root = tmp_path / "esd release"
    rows, absent, untranscribed = _release(root)
    proc = cr.run_data("esd", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 20 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    labels = {"Surprise": "surprised"}
    text = all_.table("text")
    for row in rows:
        utt, spk = key2utt[row.key], _spk(row)
        assert all_.utt2emo[utt] == labels.get(row.emotion, row.emotion.lower())
        assert all_.utt2spk[utt] == f"spk{spk}" and utt.startswith(f"spk{spk}-")
        assert all_.table("utt2gender")[utt] == ("f" if spk in FEMALE else "m")
        assert all_.table("utt2lang")[utt] == ("zh" if int(spk) <= 10 else "en")
        assert text[utt] == _text(row), (row, text[utt])
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("esd")) - len(rows) - 1
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    copy = rows[3].wav.split("/")[-1]
    assert extra[f"ESD copy/{copy}"].startswith("second copy of ")
    assert extra[f"{ROOT}/0011/Sad/0011_001799.wav"] == "not listed in the table"
    assert len(extra) == 2
    skipped = [(f, why) for kind, f, why in lines if kind == "skipped"]
    assert len(skipped) == 1 and skipped[0][0].endswith(untranscribed.wav.split("/")[-1])
    assert "no transcript line" in skipped[0][1]
    # EmoBox's ESD folds are speaker-independent (4 test speakers per fold)
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)


def test_esd_loso_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _, _ = _release(root, folds=["fold1", "fold2"])  # 2 folds keep stage 2 short
    cr.run_data("esd", tmp_path / "loso", root, "--protocol loso --dev_speakers 1")
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("esd", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_esd_missing_transcript_file(tmp_path):
    root = tmp_path / "release"
    _release(root, folds=["fold1"])
    (root / ROOT / "0005" / "0005.txt").unlink()
    proc = cr.run_data("esd", tmp_path / "data", root, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "0005/0005.txt not found" in proc.stderr
