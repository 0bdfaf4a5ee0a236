"""mixup of features and labels (Zhang et al., ICLR 2018).

Each utterance is mixed with another of the batch (a random permutation) with weight
``lam ~ Beta(alpha, alpha)`` per batch: ``x = lam x_i + (1 - lam) x_j`` over the longer of the
two lengths (the shorter is zero beyond its end, i.e. the CMVN mean), and the targets become
``lam y_i + (1 - lam) y_j`` (soft labels; the loss takes probabilities).
"""

from __future__ import annotations

import torch

from sertk.augment.registry import AUGMENTS, Batch


@AUGMENTS.register("mixup", summary="mixup of features and soft labels",
                   paper="Zhang et al., mixup, ICLR 2018")
class Mixup:
    level = "batch"

    def __init__(self, alpha: float = 0.4):
        self.alpha = alpha

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        bsz = batch.feats.shape[0]
        if bsz < 2:
            return batch
        lam = _beta_sample(self.alpha, generator)
        perm = torch.randperm(bsz, generator=generator)
        mask = (torch.arange(batch.feats.shape[1])[None, :] < batch.lengths[:, None]).to(
            batch.feats.dtype).unsqueeze(-1)
        x = batch.feats * mask
        feats = lam * x + (1 - lam) * x[perm]
        lengths = torch.maximum(batch.lengths, batch.lengths[perm])
        targets = batch.targets
        if targets.dim() == 1:
            targets = torch.nn.functional.one_hot(targets, batch.num_classes).to(feats.dtype)
        targets = lam * targets + (1 - lam) * targets[perm]
        return Batch(feats, lengths, targets, batch.num_classes)


def _beta_sample(alpha: float, generator: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from the generator (Johnk's method)."""
    while True:
        u1, u2 = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        x, y = u1 ** (1.0 / alpha), u2 ** (1.0 / alpha)
        if 0 < x + y <= 1.0:
            return x / (x + y)
