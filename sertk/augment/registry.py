"""The augmentation registry; augmentations act at one of three levels.

* ``batch`` -- on a normalised, padded :class:`Batch` inside the training step (SpecAugment,
  VTLP, mixup): ``aug(batch, generator) -> batch``;
* ``items`` -- on the list of ``(key, feats, label)`` items before padding, with access to the
  training set (CopyPaste): ``aug(items, dataset, rng) -> items``;
* ``waveform`` -- on audio in the feature-dump stage, driven by a data directory's
  ``utt2aug`` table (speed perturbation, additive noise/music, reverberation).

Randomness comes only from the generator/RNG passed in, so runs are reproducible under a seed;
nothing is applied at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from sertk.errors import SertkError
from sertk.registry import Registry

AUGMENTS = Registry("augmentation")


@dataclass
class Batch:
    """A training batch after CMVN: ``targets`` are class indices ``[B]`` or soft ``[B, C]``."""

    feats: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    num_classes: int

    def with_feats(self, feats: torch.Tensor) -> Batch:
        return replace(self, feats=feats)


def level_of(aug: Any) -> str:
    return getattr(aug, "level", "batch")


class Compose:
    """Applies batch-level augmentations in order, each with probability ``p`` per batch."""

    def __init__(self, augments: list[tuple[Any, float]]):
        self.augments = augments

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        for aug, p in self.augments:
            if p >= 1.0 or torch.rand((), generator=generator).item() < p:
                batch = aug(batch, generator)
        return batch

    def __len__(self) -> int:
        return len(self.augments)


class ItemsCompose:
    """Applies item-level augmentations (before padding) in order."""

    def __init__(self, augments: list[Any]):
        self.augments = augments

    def __call__(self, items: list, dataset: Any, rng: np.random.Generator) -> list:
        for aug in self.augments:
            items = aug(items, dataset, rng)
        return items

    def __len__(self) -> int:
        return len(self.augments)


def build_augment(cfgs: list[dict[str, Any]] | None) -> tuple[Compose | None,
                                                               ItemsCompose | None]:
    """Build the ``augment:`` list of a training config: ``[{name: ..., p: ..., ...}]``.

    Returns the batch-level and the item-level pipelines (either may be None).
    """
    batch, items = [], []
    for cfg in cfgs or []:
        cfg = dict(cfg)
        if "name" not in cfg:
            raise SertkError(f"augmentation entry without a name: {cfg}")
        name = cfg.pop("name")
        level = getattr(AUGMENTS.get(name).builder, "level", "batch")
        if level == "items":  # applies its own per-batch probability ``p``
            items.append(AUGMENTS.build(name, **cfg))
        elif level == "batch":
            p = float(cfg.pop("p", 1.0))
            batch.append((AUGMENTS.build(name, **cfg), p))
        else:
            raise SertkError(f"{name} is a {level}-level augmentation: apply it to the data "
                             "directory (`sertk data augment`) before the feature dump")
    return (Compose(batch) if batch else None, ItemsCompose(items) if items else None)
