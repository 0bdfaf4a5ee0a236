"""Layers shared by the model zoo: masking, padding-aware conv blocks, pooling, attention.

Every layer takes a ``[B, T]`` mask (True on real frames) so that outputs do not depend on
padding; see ``masking.py`` for the conventions.
"""

from sertk.models.layers.conv import ConvBlock2d
from sertk.models.layers.masking import (
    MaskedBatchNorm,
    lengths_to_mask,
    masked_pool_time,
    zero_padding,
)
from sertk.models.layers.misc import ConvBlock1d, GradientReversal, key_padding_mask
from sertk.models.layers.modality_dropout import ModalityDropout
from sertk.models.layers.pooling import (
    AdditiveAttentionPooling,
    AttentiveStatsPooling,
    GaussianAttentionPooling,
    StatsPooling,
    StructuredSelfAttention,
    masked_max,
    masked_mean,
    masked_mean_2d,
    masked_std,
)

__all__ = [
    "AdditiveAttentionPooling",
    "AttentiveStatsPooling",
    "ConvBlock1d",
    "ConvBlock2d",
    "GaussianAttentionPooling",
    "GradientReversal",
    "MaskedBatchNorm",
    "ModalityDropout",
    "StatsPooling",
    "StructuredSelfAttention",
    "key_padding_mask",
    "lengths_to_mask",
    "masked_max",
    "masked_mean",
    "masked_mean_2d",
    "masked_pool_time",
    "masked_std",
    "zero_padding",
]
