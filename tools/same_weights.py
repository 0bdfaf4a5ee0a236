"""Train a tiny light_sernet with a fixed seed on a synthetic fbank dump and print the SHA-1 of
its weights: run it with PYTHONPATH at two commits to check that a change left the training
arithmetic alone.

    PYTHONPATH=<checkout> tools/venv/bin/python tools/same_weights.py WORKDIR NAME
"""

import hashlib
import sys
from pathlib import Path

from sertk.data.synth import make_corpus
from sertk.features.dump import dump
from sertk.features.registry import FeatureConfig
from sertk.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
root, name = Path(sys.argv[1]), sys.argv[2]
if not (root / "data").exists():
    make_corpus(root / "wav", root / "data", num_speakers=4, utts_per_emotion=2, seed=1,
                duration=(1.0, 1.4))
    dump(root / "data", root / "dump", FeatureConfig.load(REPO / "conf/feats/fbank40.yaml"),
         nj=1, progress=False)
cfg = {"model": {"name": "light_sernet", "conf": {"path_channels": 4,
                                                  "lflb_channels": [8, 8, 8, 8],
                                                  "final_channels": 16}},
       "loss": {"name": "ce"}, "optim": {"name": "adam", "lr": 0.003},
       "train": {"epochs": 2, "batch_size": 8, "seed": 3, "select": "last"}}
train(cfg, root / "dump", None, root / name, device="cpu", progress=False)
print(name, hashlib.sha1((root / name / "model.safetensors").read_bytes()).hexdigest())
