"""Layers shared by the model zoo: masking, padding-aware conv blocks, pooling, attention."""

from sertk.models.layers.conv import ConvBlock2d
from sertk.models.layers.masking import (
    MaskedBatchNorm,
    lengths_to_mask,
    masked_pool_time,
    zero_padding,
)
from sertk.models.layers.pooling import (
    StructuredSelfAttention,
    masked_mean,
    masked_mean_2d,
    masked_std,
)

__all__ = [
    "ConvBlock2d",
    "MaskedBatchNorm",
    "StructuredSelfAttention",
    "lengths_to_mask",
    "masked_mean",
    "masked_mean_2d",
    "masked_pool_time",
    "masked_std",
    "zero_padding",
]
