#!/usr/bin/env python3
"""Test UA of each member of an ensemble (``model.members``) and of its first k members.

    local/ensemble_members.py [--expdir exp] [--dumpdir dump/logmel64] TAG

For every fold of EXPDIR/TAG: the test UA of member 1..K alone and of the ensembles of the
first k members (posteriors averaged), on DUMPDIR/<fold>/test; then the means over folds. One
K-member run thus also gives K single-model runs (different initialisations, same batches) and
the gain of the ensemble over its members.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from sertk.data.dataset import FeatsDataset, pad_collate
from sertk.data.sampler import BucketBatchSampler
from sertk.infer.packed import load_packed
from sertk.scoring import confusion_matrix, metrics_from_confusion


@torch.no_grad()
def member_posteriors(exp: Path, test: Path) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors ``[K, N, C]`` of every member and the reference labels ``[N]``."""
    packed = load_packed(exp)
    ds = FeatsDataset(test, packed.labels)
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=BucketBatchSampler(ds.lengths, 32, shuffle=False),
        collate_fn=pad_collate)
    model = packed.model.eval()
    members = getattr(model.net, "members", [model.net])
    posts, refs = [], []
    for batch in loader:
        x = model.cmvn(batch["feats"])
        posts.append(torch.stack([torch.softmax(m(x, batch["lengths"]).float(), -1)
                                  for m in members]))
        refs.append(batch["labels"])
    return torch.cat(posts, 1).numpy(), torch.cat(refs).numpy()


def ua(post: np.ndarray, ref: np.ndarray) -> float:
    cm = confusion_matrix(ref, post.argmax(-1), post.shape[-1])
    return 100 * metrics_from_confusion(cm, [str(i) for i in range(post.shape[-1])])["UA"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expdir", default="exp")
    ap.add_argument("--dumpdir", default="dump/logmel64")
    ap.add_argument("tag")
    a = ap.parse_args()
    root = Path(a.expdir) / a.tag
    folds = sorted(p.name for p in root.iterdir() if (p / "model.safetensors").is_file()
                   and p.name != "final")
    singles, ens = [], []
    for f in folds:
        post, ref = member_posteriors(root / f, Path(a.dumpdir) / f / "test")
        singles.append([ua(p, ref) for p in post])
        ens.append([ua(post[:k].mean(0), ref) for k in range(1, len(post) + 1)])
        print(f"{f}: members " + " ".join(f"{u:.2f}" for u in singles[-1]) + " | first k "
              + " ".join(f"{u:.2f}" for u in ens[-1]))
    k = len(singles[0])
    for i in range(k):
        col = [s[i] for s in singles]
        print(f"member {i + 1}: UA {statistics.mean(col):.2f} ± {statistics.pstdev(col):.2f}")
    for i in range(k):
        col = [e[i] for e in ens]
        print(f"ensemble of the first {i + 1}: UA {statistics.mean(col):.2f} ± "
              f"{statistics.pstdev(col):.2f}")


if __name__ == "__main__":
    main()
