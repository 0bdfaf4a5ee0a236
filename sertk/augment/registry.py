"""The augmentation registry and the composition of several augmentations."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from sertk.errors import SertkError
from sertk.registry import Registry

AUGMENTS = Registry("augmentation")


class BatchAugment(Protocol):
    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor: ...


class Compose:
    """Applies augmentations in order, each with probability ``p`` (default 1)."""

    def __init__(self, augments: list[tuple[BatchAugment, float]]):
        self.augments = augments

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        for aug, p in self.augments:
            if p >= 1.0 or torch.rand((), generator=generator).item() < p:
                feats = aug(feats, lengths, generator)
        return feats

    def __len__(self) -> int:
        return len(self.augments)


def build_augment(cfgs: list[dict[str, Any]] | None) -> Compose | None:
    """Build from the ``augment:`` list of a training config: ``[{name: ..., p: ..., ...}]``."""
    if not cfgs:
        return None
    out = []
    for cfg in cfgs:
        cfg = dict(cfg)
        if "name" not in cfg:
            raise SertkError(f"augmentation entry without a name: {cfg}")
        name, p = cfg.pop("name"), float(cfg.pop("p", 1.0))
        out.append((AUGMENTS.build(name, **cfg), p))
    return Compose(out)
