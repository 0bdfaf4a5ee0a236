"""Padding-aware 2-D convolution blocks (conv -> BN -> activation -> pool)."""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers.masking import MaskedBatchNorm, masked_pool_time, zero_padding

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "none": nn.Identity}


class ConvBlock2d(nn.Module):
    """Conv2d ('same' padding, stride 1) -> masked BatchNorm -> activation -> optional pooling.

    Input and output are ``[B, C, T, F]`` with a ``[B, T]`` mask. The input's padded frames
    must be zero (they then look like the 'same' zero padding of an unpadded utterance); the
    output's padded frames are zero too, so blocks chain without extra masking.
    This is the LFLB of Zhao et al. / LIGHT-SERNET and the CNN layer of Ando et al.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int] | int = 3,
                 pool: tuple[int, int] | None = None, pool_kind: str = "max",
                 activation: str = "relu", bias: bool = True):
        super().__init__()
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        # 'same' padding; even kernels pad explicitly (left = (k - 1) // 2, as torch does)
        self.pad = None if all(n % 2 for n in k) else (
            (k[1] - 1) // 2, k[1] // 2, (k[0] - 1) // 2, k[0] // 2)
        self.conv = nn.Conv2d(in_ch, out_ch, k, padding="same" if self.pad is None else 0,
                              bias=bias)
        self.bn = MaskedBatchNorm(out_ch)
        self.act = ACTIVATIONS[activation]()
        self.pool = tuple(pool) if pool else None
        self.pool_kind = pool_kind

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pad is not None:
            x = nn.functional.pad(x, self.pad)
        x = self.act(self.bn(self.conv(x), mask))
        if self.pool is None:
            return zero_padding(x, mask), mask
        return masked_pool_time(x, mask, self.pool, self.pool_kind)
