"""The packed model that ships with sertk (``sertk/pretrained``): ``sertk infer --model NAME``
works on a fresh clone without training; on real RAVDESS audio (only where
``../shared/corpora/ravdess`` exists) it recognises the utterances it was trained on."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from sertk.infer.packed import PRETRAINED_DIR, shipped_models
from tests.conftest import REPO, run_sertk

NAME = "ravdess_cnn_asp_ref"
RAVDESS = REPO.parent / "shared" / "corpora" / "ravdess"
EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def test_the_shipped_model_is_small_documented_and_packaged():
    assert NAME in shipped_models()
    path = PRETRAINED_DIR / f"{NAME}.zip"
    assert path.stat().st_size < 5 * 2**20  # a few MB at most
    with zipfile.ZipFile(path) as zf:
        config = yaml.safe_load(zf.read("config.yaml"))
        labels = zf.read("labels.txt").decode().split()
    assert config["model"]["name"] == "cnn_asp" and sorted(labels) == sorted(EMOTIONS)
    assert f"`{NAME}`" in (PRETRAINED_DIR / "README.md").read_text()
    setup = (REPO / "setup.py").read_text()
    assert '"pretrained/*.zip"' in setup  # installed with the package, not only in the clone


def test_infer_by_name_on_generated_audio(tmp_path):
    rng = np.random.default_rng(0)
    for name, sr, seconds in (("long", 48000, 2.5), ("short", 16000, 0.6)):
        t = np.arange(int(sr * seconds)) / sr
        tone = 0.3 * np.sin(2 * np.pi * (140 + 40 * np.sin(3 * t)) * t)
        sf.write(tmp_path / f"{name}.wav", (tone + 0.01 * rng.standard_normal(t.size)
                                           ).astype(np.float32), sr)
    out = tmp_path / "out.jsonl"
    run_sertk("infer", "--model", NAME, "--dir", tmp_path, "--out", out, "--no-progress")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert sorted(r["posteriors"]) == sorted(EMOTIONS)
        assert sum(r["posteriors"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == max(r["posteriors"], key=r["posteriors"].get)


def test_unknown_model_name_lists_the_shipped_ones():
    proc = run_sertk("infer", "--model", "no_such_model", "--dir", ".", check=False)
    assert proc.returncode != 0 and NAME in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="../shared/corpora/ravdess not present")
def test_shipped_model_recognises_its_training_audio(tmp_path):
    # one file per emotion and actor for 6 actors: the model saw them all in training, so a
    # front end or normalisation mismatch between training and inference would show here
    files = sorted(Path(RAVDESS).glob("Actor_0[1-6]/03-01-*-02-01-01-*.flac"))
    assert len(files) == 6 * 7  # strong intensity, statement 1, take 1 (neutral has none)
    (tmp_path / "list.txt").write_text("".join(f"{f}\n" for f in files))
    out = tmp_path / "out.jsonl"
    run_sertk("infer", "--model", NAME, "--wav-list", tmp_path / "list.txt", "--out", out,
              "--no-progress")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    truth = {Path(f).stem: EMOTIONS[int(Path(f).stem.split("-")[2]) - 1] for f in files}
    correct = sum(truth[Path(r["key"]).stem] == r["label"] for r in records)
    assert len(records) == len(files) and correct / len(files) > 0.7
