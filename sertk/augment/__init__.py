"""Training-time augmentations (one registry); off at inference.

An augmentation maps a normalised batch ``feats [B, T, D]`` with ``lengths [B]`` to a new one,
drawing randomness only from the ``torch.Generator`` it is given, so runs are reproducible
under a seed.
"""

from sertk.augment import specaugment  # noqa: F401  (register augmentations)
from sertk.augment.registry import AUGMENTS, Compose, build_augment

__all__ = ["AUGMENTS", "Compose", "build_augment"]
