"""Training-time augmentations (one registry); off at inference. See ``registry.py`` for the
three levels (batch, items, waveform)."""

from sertk.augment import copypaste, mixup, specaugment, vtlp, waveform  # noqa: F401
from sertk.augment.registry import AUGMENTS, Batch, Compose, ItemsCompose, build_augment

__all__ = ["AUGMENTS", "Batch", "Compose", "ItemsCompose", "build_augment"]
