"""Feature front ends (one registry), CMVN and the parallel feature dump."""

from sertk.features import kaldi, logmel, spectrogram  # noqa: F401  (register front ends)
from sertk.features.registry import FEATURES, FeatureConfig, build_frontend

__all__ = ["FEATURES", "FeatureConfig", "build_frontend"]
