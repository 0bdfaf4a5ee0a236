"""Padding-aware 2-D convolution blocks (conv -> BN -> activation -> pool), and their
inference form (:meth:`ConvBlock2d.deploy`: BN folded into the conv, oneDNN over
time-bucketed lengths), which ``sertk infer`` uses when a probe gives the same posteriors."""

from __future__ import annotations

from collections.abc import Callable

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
        self.bn: MaskedBatchNorm | None = MaskedBatchNorm(out_ch)  # None once deployed
        self.act = ACTIVATIONS[activation]()
        self.pool = tuple(pool) if pool else None
        self.pool_kind = pool_kind
        self.deployed = False  # see deploy()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pad is not None:
            x = nn.functional.pad(x, self.pad)
        x = bucketed_conv2d(self.conv, x) if self.deployed else self.conv(x)
        if self.bn is not None:
            x = self.bn(x, mask)
        x = self.act(x)
        if self.pool is None:
            return zero_padding(x, mask), mask
        return masked_pool_time(x, mask, self.pool, self.pool_kind)

    @torch.no_grad()
    def deploy(self) -> None:
        """The inference form: the eval-mode BN folded into the conv's weights and bias (one
        pass over the map less), a ReLU run in place, and on a CPU oneDNN's convolution over
        time-bucketed inputs (:func:`bucketed_conv2d`). The block then no longer trains as
        before (no batch statistics): only for a model that is only evaluated."""
        if self.deployed:
            return
        self.conv = fold_conv_bn(self.conv, self.bn)
        self.bn = None
        if isinstance(self.act, nn.ReLU):
            self.act = nn.ReLU(inplace=True)
        self.deployed = True


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: MaskedBatchNorm) -> nn.Conv2d:
    """A conv with bias equal to ``conv`` followed by ``bn`` in eval mode."""
    scale, shift = bn.eval_affine()
    w = conv.weight
    b = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device="meta")
    # elementwise products keep the weight's device, dtype and memory format (channels-last)
    fused.weight = nn.Parameter(w * scale.view(-1, 1, 1, 1), requires_grad=w.requires_grad)
    fused.bias = nn.Parameter(b * scale + shift, requires_grad=w.requires_grad)
    return fused


def time_bucket(frames: int) -> int:
    """``frames`` rounded up to a multiple of 2^(floor(log2 frames) - 3) (at least 8): eight
    lengths per octave, at most 1/8 more frames."""
    step = max(8, 1 << max(0, frames.bit_length() - 4))
    return -(-frames // step) * step


def bucketed_conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for ``x [B, C, T, F]``, on a CPU by oneDNN's convolution (about 25 %
    faster than PyTorch's own there) with the time axis zero-padded to :func:`time_bucket`
    and the output cut back to ``T`` frames. A stride-1 zero-padded conv's first ``T``
    output frames read only the real frames and zeros either way, so the result is that of
    ``conv(x)``; and oneDNN compiles a kernel per input shape (about 1 MB each), so bucketing
    keeps that cache to a few shapes instead of one per utterance length. Elsewhere (CUDA,
    other dtypes, strides, padding modes, a torch without oneDNN) it is ``conv(x)``."""
    if (x.device.type != "cpu" or x.dtype != torch.float32 or conv.stride[0] != 1
            or conv.padding_mode != "zeros" or not torch.backends.mkldnn.is_available()):
        return conv(x)
    if conv.padding == "same" and any(k % 2 == 0 for k in conv.kernel_size):
        return conv(x)  # torch pads such a kernel unevenly itself
    pad = [0, 0] if conv.padding == "valid" else list(conv.padding) \
        if not isinstance(conv.padding, str) else \
        [d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation)]
    frames = x.shape[2]
    if time_bucket(frames) != frames:
        x = nn.functional.pad(x, (0, 0, 0, time_bucket(frames) - frames))
    y = torch.mkldnn_convolution(x, conv.weight, conv.bias, pad, list(conv.stride),
                                 list(conv.dilation), conv.groups)
    return y[:, :, :y.shape[2] - (x.shape[2] - frames)]


def deploy_conv_blocks(model: nn.Module) -> Callable[[], None] | None:
    """Every :class:`ConvBlock2d` of ``model`` in its inference form (see
    :meth:`ConvBlock2d.deploy`). Returns a function that undoes it, or None when there is
    nothing to change."""
    blocks = [m for m in model.modules() if isinstance(m, ConvBlock2d) and not m.deployed]
    if not blocks:
        return None
    saved = [(b, b.conv, b.bn, b.act) for b in blocks]
    for b in blocks:
        b.deploy()

    def undo() -> None:
        for b, conv, bn, act in saved:
            b.conv, b.bn, b.act, b.deployed = conv, bn, act, False

    return undo
