"""Small shared pieces: gradient reversal (Ganin & Lempitsky 2015), masked 1-D convolution
blocks and the sequence-mask helper for transformers."""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers.masking import MaskedBatchNorm


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: ANN001
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        return -ctx.scale * grad, None


class GradientReversal(nn.Module):
    """Identity forward, ``-scale *`` gradient backward (domain-adversarial training)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GradReverse.apply(x, self.scale)


class ConvBlock1d(nn.Module):
    """Conv1d over time ('same' padding) -> masked BatchNorm -> activation on ``[B, C, T]``;
    padded frames are zero on input and output (padding-independent like ConvBlock2d)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, dilation: int = 1,
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, padding="same", dilation=dilation)
        self.bn = MaskedBatchNorm(out_ch)
        self.act = activation()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x), mask))
        return y.masked_fill(~mask.unsqueeze(1), 0.0)


def key_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """``nn.MultiheadAttention``/``TransformerEncoder`` key padding mask (True = ignore)."""
    return ~mask
