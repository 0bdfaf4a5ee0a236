"""Losses: cross-entropy (optionally class-weighted, label-smoothed) and focal for categories;
CCC for dimensional targets.

Config (``loss:`` in a training config)::

    name: ce | focal | ccc
    class_weights: false    # true: weights = inverse class frequency in the training set,
                            # normalised to mean 1 (Ando et al. 2021)
    label_smoothing: 0.0    # ce only
    gamma: 2.0              # focal only (Lin et al. 2017; LIGHT-SERNET uses 2)
    weights: [1, 1, 1]      # ccc only: a, b, c of 1 - a CCC_aro - b CCC_val - c CCC_dom
                            # (Atmaja & Akagi use 0.7, 0.2, 1.0)
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


def batch_ccc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CCC of each column of ``[B, D]`` predictions against targets (population moments)."""
    pred, target = pred.float(), target.float()
    mp, mt = pred.mean(0), target.mean(0)
    cov = ((pred - mp) * (target - mt)).mean(0)
    denom = pred.var(0, unbiased=False) + target.var(0, unbiased=False) + (mp - mt) ** 2
    return 2 * cov / denom.clamp_min(1e-8)


class CCCLoss(nn.Module):
    """``1 - sum_d w_d CCC_d`` over a batch of ``[B, D]`` dimensional predictions (the
    multi-task CCC loss of Atmaja & Akagi; with weights 1 each, Tzirakis et al.'s)."""

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__()
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.shape[-1] != len(self.weights):
            raise SertkError(f"ccc loss: predictions {tuple(pred.shape)} and targets "
                             f"{tuple(target.shape)} must both be [batch, {len(self.weights)}]")
        return 1 - (self.weights * batch_ccc(pred, target)).sum()


def emotion_loss(criterion: nn.Module, logits: torch.Tensor, target: torch.Tensor
                 ) -> torch.Tensor:
    """``criterion`` on ``[B, C]`` logits (in float32, also under autocast), or summed over
    the members of ``[K, B, C]`` (an ensemble in training: each member gets the gradient of
    its own loss)."""
    if logits.dim() == 3:
        return sum(criterion(member.float(), target) for member in logits)
    return criterion(logits.float(), target)


def build_loss(cfg: dict[str, Any], class_counts: Sequence[int]) -> nn.Module:
    """``ce`` and ``focal`` (categorical task) accept class indices or probabilities (soft
    labels) as targets; ``ccc`` and ``mse`` (dimensional task) take ``[B, D]`` values."""
    cfg = dict(cfg or {})
    name = cfg.pop("name", "ce")
    weight = inverse_frequency_weights(class_counts) if cfg.pop("class_weights", False) else None
    if name == "ce":
        loss: nn.Module = nn.CrossEntropyLoss(
            weight=weight, label_smoothing=float(cfg.pop("label_smoothing", 0.0)))
    elif name == "focal":
        loss = FocalLoss(gamma=float(cfg.pop("gamma", 2.0)), weight=weight)
    elif name == "ccc":
        loss = CCCLoss(cfg.pop("weights", (1.0, 1.0, 1.0)))
    elif name == "mse":
        loss = nn.MSELoss()
    else:
        raise SertkError(f"unknown loss {name!r}; known: ce, focal, ccc, mse")
    if cfg:
        raise SertkError(f"unknown options for loss {name!r}: {', '.join(sorted(cfg))}")
    return loss
