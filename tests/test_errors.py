"""User errors print one clear line naming the utterance and the file -- no traceback."""

from __future__ import annotations

import re
import shutil

import kaldiio
import numpy as np
import pytest

from sertk.data.kaldi_table import read_table, write_table
from tests.conftest import REPO, run_sertk

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \(\w+:\d+\) INFO: ")


def _one_line_error(proc, *must_contain: str) -> str:
    """Exit status 1, no traceback, exactly one line besides INFO log lines."""
    assert proc.returncode == 1, proc.stderr
    err = [line for line in proc.stderr.splitlines()
           if line.strip() and not LOG_LINE.match(line)]
    assert "Traceback" not in proc.stderr
    assert len(err) == 1, proc.stderr
    for text in must_contain:
        assert text in err[0], err[0]
    return err[0]


@pytest.fixture()
def broken(tmp_path, corpus):
    """Copy of the corpus data dir whose first utterance points at a bad file."""
    d = tmp_path / "data"
    shutil.copytree(corpus, d)
    wav = read_table(d / "wav.scp")
    utt = sorted(wav)[0]
    return d, utt, wav


@pytest.mark.parametrize("kind, text", [
    ("missing", "audio file not found"),
    ("empty", "audio file is empty (0 bytes)"),
    ("corrupt", "cannot decode audio file"),
])
def test_bad_audio_in_feature_dump(tmp_path, broken, kind, text):
    d, utt, wav = broken
    bad = tmp_path / f"{kind}.wav"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "corrupt":
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage that is not a header" * 3)
    wav[utt] = str(bad)
    write_table(d / "wav.scp", wav)
    conf = REPO / "conf" / "feats" / "fbank40.yaml"
    proc = run_sertk("feats", "dump", "--conf", conf, "--nj", "2", "--no-progress", d,
                     tmp_path / "dump", check=False)
    line = _one_line_error(proc, f"utterance {utt}", str(bad), text)
    assert line.startswith("sertk: error:")
    # the same through validation (lists the problem, then one summary error line)
    val = run_sertk("data", "validate", d, check=False)
    assert val.returncode == 1 and "Traceback" not in val.stderr
    assert f"utterance {utt}" in val.stderr and text in val.stderr
    # and through inference on a wav.scp
    scp = tmp_path / "wav.scp"
    scp.write_text(f"{utt} {bad}\n")
    exp = tmp_path / "noexp"
    exp.mkdir()
    proc = run_sertk("infer", "--model", exp, "--wav-scp", scp, check=False)
    _one_line_error(proc, "missing")  # no model: also one line


def test_bad_audio_in_infer(tmp_path, trained):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    proc = run_sertk("infer", "--model", trained, "--wav-list", _write(tmp_path / "l",
                     f"{bad}\n"), check=False)
    _one_line_error(proc, "utterance broken", str(bad), "cannot decode audio file")
    # with --out the progress bar is on: the error still starts a line of its own
    proc = run_sertk("infer", "--model", trained, "--wav-list", tmp_path / "l", "--out",
                     tmp_path / "o.jsonl", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.replace("\r", "\n").splitlines()
    assert [ln for ln in lines if ln.startswith("sertk: error: utterance broken")], proc.stderr
    assert sum("sertk: error" in ln for ln in lines) == 1, proc.stderr
    # --skip-bad reports and counts instead of stopping
    proc = run_sertk("infer", "--model", trained, "--wav-list",
                     _write(tmp_path / "l2", f"{bad}\n"), "--skip-bad", check=False)
    assert proc.returncode == 0 and "skipped: utterance broken" in proc.stderr
    assert "0 files recognised, 1 skipped" in proc.stderr


def _write(path, text):
    path.write_text(text)
    return path


def test_unknown_label_names_utterance(tmp_path, dumped):
    dev = tmp_path / "dev"
    shutil.copytree(dumped / "fold1" / "dev", dev)
    emo = read_table(dev / "utt2emo")
    utt = sorted(emo)[2]
    emo[utt] = "ecstatic"
    write_table(dev / "utt2emo", emo)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: light_sernet}\ntrain: {epochs: 1}\n")
    proc = run_sertk("train", "--config", cfg, "--train", dumped / "fold1" / "train",
                     "--valid", dev, "--exp", tmp_path / "exp", "--no-progress", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"sertk: error: utterance {utt}: unknown label 'ecstatic'" in proc.stderr


def test_nan_feature_names_utterance_and_file(tmp_path, dumped):
    d = tmp_path / "nan"
    shutil.copytree(dumped / "fold1" / "dev", d)
    scp = read_table(d / "feats.scp")
    utt = sorted(scp)[0]
    mat = kaldiio.load_mat(scp[utt]).copy()
    mat[3, 2] = np.nan
    kaldiio.save_ark(str(tmp_path / "nan.ark"), {utt: mat}, scp=str(tmp_path / "nan.scp"))
    scp[utt] = (tmp_path / "nan.scp").read_text().split()[1]
    write_table(d / "feats.scp", scp)
    proc = run_sertk("predict", "--model", dumped.parent / "none", "--data", d, "--out-dir",
                     tmp_path / "o", check=False)
    _one_line_error(proc)  # missing model is reported first, as one line
    from sertk.data.dataset import FeatsDataset
    from sertk.errors import DataError

    ds = FeatsDataset(d, ["angry", "happy", "neutral", "sad"])
    with pytest.raises(DataError, match=rf"utterance {utt}: NaN/Inf in features .*nan.ark"):
        ds[ds.keys.index(utt)]


def test_duplicate_key_is_reported_with_line(tmp_path, corpus):
    d = tmp_path / "dup"
    shutil.copytree(corpus, d)
    lines = (d / "utt2emo").read_text().splitlines(True)
    (d / "utt2emo").write_text("".join(lines + lines[:1]))
    proc = run_sertk("data", "validate", d, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"utt2emo:{len(lines) + 1}: duplicate key" in proc.stderr
