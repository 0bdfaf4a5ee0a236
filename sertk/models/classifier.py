"""``EmotionClassifier``: feature normalisation + a registered network, the unit that is
trained, checkpointed and packed."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sertk.features.cmvn import GlobalCMVN
from sertk.models.registry import MODELS


class EmotionClassifier(nn.Module):
    """``logits = net(cmvn(feats), lengths)``; ``normalized=True`` skips the CMVN (the trainer
    normalises first so that augmentations see normalised features)."""

    def __init__(self, name: str, input_dim: int, num_classes: int,
                 conf: dict[str, Any] | None = None, cmvn: GlobalCMVN | None = None,
                 aux_classes: dict[str, int] | None = None):
        super().__init__()
        extra = {"aux_classes": aux_classes} if aux_tables(name) else {}
        self.net = MODELS.build(name, input_dim=input_dim, num_classes=num_classes,
                                **(conf or {}), **extra)
        self.cmvn = cmvn if cmvn is not None else GlobalCMVN(np.zeros(input_dim),
                                                             np.ones(input_dim))
        self.name = name
        self.input_dim = input_dim
        self.num_classes = num_classes

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, normalized: bool = False
                ) -> torch.Tensor:
        return self.net(feats if normalized else self.cmvn(feats), lengths)


def aux_tables(name: str) -> tuple[str, ...]:
    """The auxiliary target tables a registered model asks for (see ``registry.py``)."""
    return tuple(getattr(MODELS.get(name).builder, "aux_tables", ()))
