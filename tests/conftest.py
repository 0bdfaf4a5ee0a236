"""Shared fixtures: a small synthetic corpus, its dumped features and a briefly trained model.

Everything is generated here; no test needs ../shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sertk.data.folds import make_folds
from sertk.data.synth import make_corpus
from sertk.features import FeatureConfig
from sertk.features.dump import dump

REPO = Path(__file__).resolve().parents[1]
SERTK = [sys.executable, "-m", "sertk.cli.main"]


def run_sertk(*args: str, check: bool = True, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    """Run the sertk CLI in a subprocess (as a user would) and capture its output."""
    proc = subprocess.run([*SERTK, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"sertk {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A 6-speaker, 4-emotion synthetic corpus (72 utterances) as a Kaldi data dir."""
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root / "wav", root / "data", num_speakers=6, utts_per_emotion=3, seed=1,
                duration=(1.0, 1.6))
    return root / "data"


@pytest.fixture(scope="session")
def dumped(corpus, tmp_path_factory) -> Path:
    """fbank40 features of ``corpus`` and one fold: test spk05 spk06, dev spk03 spk04."""
    root = tmp_path_factory.mktemp("dump")
    cfg = FeatureConfig.load(REPO / "conf" / "feats" / "fbank40.yaml")
    dump(corpus, root / "all", cfg, nj=2, progress=False)
    spec = {"fold1": ["spk05", "spk06"]}
    make_folds(corpus, root / "folds", spec, dev_speakers=2, seed=0)
    from sertk.data.datadir import subset

    for part in ("train", "dev", "test"):
        utts = (root / "folds" / "fold1" / part / "utt2spk").read_text().split()[::2]
        subset(root / "all", root / "fold1" / part, utts=utts)
    return root


TINY_CONFIG = {
    "model": {"name": "light_sernet", "conf": {"path_channels": 4, "lflb_channels": [8, 8, 8, 8],
                                               "final_channels": 16}},
    "loss": {"name": "ce"},
    "optim": {"name": "adam", "lr": 0.003},
    "train": {"epochs": 2, "batch_size": 8, "seed": 3},
}


@pytest.fixture(scope="session")
def trained(dumped, tmp_path_factory) -> Path:
    """A tiny LIGHT-SERNET trained for 2 epochs; returns the experiment directory."""
    from sertk.train.trainer import train

    exp = tmp_path_factory.mktemp("exp") / "tiny"
    train(TINY_CONFIG, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp,
          device="cpu", progress=False)
    return exp
