"""Deep ensembles in one model (Lakshminarayanan et al., NeurIPS 2017).

``model.members: K`` in a training config builds K copies of the network, each with its own
random initialisation, trained side by side: the trainer sums the members' losses, so each
member gets the gradient of its own loss (the members share the batches and their augmentation
draws). At evaluation the members' posteriors are averaged and returned as log-probabilities,
which the rest of sertk treats as logits. One config, one checkpoint, one packed file; K times
the compute of one member.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Ensemble(nn.Module):
    def __init__(self, build: Callable[[], nn.Module], members: int):
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        self.members = nn.ModuleList(build() for _ in range(members))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Training: the members' logits ``[K, B, C]``; evaluation: log of the mean
        posterior ``[B, C]``."""
        out = torch.stack([m(feats, lengths) for m in self.members])
        if self.training:
            return out
        post = torch.softmax(out.float(), dim=-1).mean(0)
        return post.clamp_min(1e-12).log()
