"""``EmotionClassifier``: feature normalisation + a registered network, the unit that is
trained, checkpointed and packed."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sertk.errors import SertkError
from sertk.features.cmvn import GlobalCMVN
from sertk.models.ensemble import Ensemble
from sertk.models.registry import MODELS


class EmotionClassifier(nn.Module):
    """``logits = net(cmvn(feats), lengths)``; ``normalized=True`` skips the CMVN (the trainer
    normalises first so that augmentations see normalised features)."""

    def __init__(self, name: str, input_dim: int, num_classes: int,
                 conf: dict[str, Any] | None = None, cmvn: GlobalCMVN | None = None,
                 aux_classes: dict[str, int] | None = None, members: int = 1,
                 input_sizes: dict[str, int] | None = None):
        super().__init__()
        extra: dict[str, Any] = {"aux_classes": aux_classes} if aux_tables(name, conf) else {}
        kinds = input_tables(name, conf)
        self.reads_inputs = bool(kinds)
        # other utterances' features (dialogue context): normalised like the features
        self.context_tables = [t for t, k in kinds.items() if k == "context"]
        if self.reads_inputs:
            extra["input_sizes"] = input_sizes
        if members > 1 and extra:
            raise SertkError(f"model {name} has auxiliary targets or extra inputs: it cannot "
                             "be an ensemble (model.members)")
        self.net = build_net(name, input_dim, num_classes, conf, members, **extra)
        self.cmvn = cmvn if cmvn is not None else GlobalCMVN(np.zeros(input_dim),
                                                             np.ones(input_dim))
        self.name = name
        self.input_dim = input_dim
        self.num_classes = num_classes

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, normalized: bool = False,
                aux_targets: dict[str, torch.Tensor] | None = None,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``aux_targets`` also the network's auxiliary loss, computed inside
        this forward so that DDP sees every parameter it reaches. ``inputs``: the batch's
        extra inputs (:mod:`sertk.data.inputs`) for a model that reads them."""
        x = feats if normalized else self.cmvn(feats)
        if inputs and self.context_tables:
            inputs = {t: (self.cmvn(v), n) if t in self.context_tables else (v, n)
                      for t, (v, n) in inputs.items()}
        logits = self.net(x, lengths, inputs=inputs) if self.reads_inputs \
            else self.net(x, lengths)
        if aux_targets is None:
            return logits
        return logits, self.net.auxiliary_loss(aux_targets)


def build_net(name: str, input_dim: int, num_classes: int, conf: dict[str, Any] | None = None,
              members: int = 1, **extra: Any) -> nn.Module:
    """The registered network ``name``, or an :class:`Ensemble` of ``members`` of them."""
    def one() -> nn.Module:
        return MODELS.build(name, input_dim=input_dim, num_classes=num_classes, **(conf or {}),
                            **extra)

    return Ensemble(one, int(members)) if int(members) > 1 else one()


def members_of(model_cfg: dict[str, Any]) -> int:
    """``model.members`` of a training config (1: a single network)."""
    k = model_cfg.get("members", 1)
    if not isinstance(k, int) or k < 1:
        raise SertkError(f"model.members must be a positive integer, got {k!r}")
    return k


def aux_tables(name: str, conf: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The auxiliary target tables a registered model asks for with this config (its
    ``aux_tables_for(conf)`` if it has one, else its ``aux_tables``; see ``registry.py``)."""
    builder = MODELS.get(name).builder
    if hasattr(builder, "aux_tables_for"):
        return tuple(builder.aux_tables_for(conf or {}))
    return tuple(getattr(builder, "aux_tables", ()))


def input_tables(name: str, conf: dict[str, Any] | None = None) -> dict[str, str]:
    """The extra input tables (``{table: kind}``, see :mod:`sertk.data.inputs`) a registered
    model reads with this config (its ``input_tables_for(conf)``, else ``input_tables``)."""
    builder = MODELS.get(name).builder
    if hasattr(builder, "input_tables_for"):
        return dict(builder.input_tables_for(conf or {}))
    return dict(getattr(builder, "input_tables", {}))


def aux_kinds(name: str, conf: dict[str, Any] | None = None) -> dict[str, str]:
    """The kind of each auxiliary table (``class`` unless the model's ``aux_kinds_for(conf)``
    or ``aux_kinds`` says otherwise; see ``registry.py``)."""
    builder = MODELS.get(name).builder
    kinds = builder.aux_kinds_for(conf or {}) if hasattr(builder, "aux_kinds_for") \
        else getattr(builder, "aux_kinds", {})
    return {t: kinds.get(t, "class") for t in aux_tables(name, conf)}
