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
        extra = {"aux_classes": aux_classes} if aux_tables(name, conf) else {}
        self.net = MODELS.build(name, input_dim=input_dim, num_classes=num_classes,
                                **(conf or {}), **extra)
        self.cmvn = cmvn if cmvn is not None else GlobalCMVN(np.zeros(input_dim),
                                                             np.ones(input_dim))
        self.name = name
        self.input_dim = input_dim
        self.num_classes = num_classes

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, normalized: bool = False,
                aux_targets: dict[str, torch.Tensor] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``aux_targets`` also the network's auxiliary loss, computed inside
        this forward so that DDP sees every parameter it reaches."""
        logits = self.net(feats if normalized else self.cmvn(feats), lengths)
        if aux_targets is None:
            return logits
        return logits, self.net.auxiliary_loss(aux_targets)


def aux_tables(name: str, conf: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The auxiliary target tables a registered model asks for with this config (its
    ``aux_tables_for(conf)`` if it has one, else its ``aux_tables``; see ``registry.py``)."""
    builder = MODELS.get(name).builder
    if hasattr(builder, "aux_tables_for"):
        return tuple(builder.aux_tables_for(conf or {}))
    return tuple(getattr(builder, "aux_tables", ()))
