"""Feature front ends (one registry), CMVN and the parallel feature dump."""

from sertk.features import (  # noqa: F401  (register front ends)
    kaldi,
    logmel,
    opensmile_fe,
    spectrogram,
    ssl,
)
from sertk.features.registry import FEATURES, FeatureConfig, build_frontend

__all__ = ["FEATURES", "FeatureConfig", "build_frontend"]
