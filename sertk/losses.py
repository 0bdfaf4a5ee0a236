"""Classification losses: cross-entropy (optionally class-weighted, label-smoothed) and focal.

Config (``loss:`` in a training config)::

    name: ce | focal
    class_weights: false    # true: weights = inverse class frequency in the training set,
                            # normalised to mean 1 (Ando et al. 2021)
    label_smoothing: 0.0    # ce only
    gamma: 2.0              # focal only (Lin et al. 2017; LIGHT-SERNET uses 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError


def inverse_frequency_weights(counts: Sequence[int]) -> torch.Tensor:
    c = torch.tensor(counts, dtype=torch.float32)
    if (c == 0).any():
        raise SertkError("class_weights: a class has no training utterance")
    w = 1.0 / c
    return w * len(c) / w.sum()


class FocalLoss(nn.Module):
    """``-sum_c y_c (1 - p_c)^gamma log p_c``, averaged over the batch (optionally weighted)."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target``: class indices ``[B]`` or probabilities ``[B, C]`` (e.g. from mixup)."""
        logp = F.log_softmax(logits.float(), dim=-1)
        soft = target if target.dim() == 2 else F.one_hot(target, logits.shape[-1]).float()
        per_class = -soft * (1 - logp.exp()) ** self.gamma * logp
        if self.weight is not None:
            w = (soft * self.weight).sum(-1)
            return (per_class * self.weight).sum() / w.sum()
        return per_class.sum(-1).mean()


def build_loss(cfg: dict[str, Any], class_counts: Sequence[int]) -> nn.Module:
    """Both losses accept class indices or probabilities (soft labels) as targets."""
    cfg = dict(cfg or {})
    name = cfg.pop("name", "ce")
    weight = inverse_frequency_weights(class_counts) if cfg.pop("class_weights", False) else None
    if name == "ce":
        loss: nn.Module = nn.CrossEntropyLoss(
            weight=weight, label_smoothing=float(cfg.pop("label_smoothing", 0.0)))
    elif name == "focal":
        loss = FocalLoss(gamma=float(cfg.pop("gamma", 2.0)), weight=weight)
    else:
        raise SertkError(f"unknown loss {name!r}; known: ce, focal")
    if cfg:
        raise SertkError(f"unknown options for loss {name!r}: {', '.join(sorted(cfg))}")
    return loss
