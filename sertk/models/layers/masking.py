"""Padding masks and mask-aware normalisation and pooling.

Convention: a batch of feature maps is ``[B, C, T, F]`` (time before frequency) or a sequence
``[B, T, D]``; ``mask`` is ``[B, T]`` with True on real frames. Layers here keep every output
frame of an utterance equal to what the utterance alone (unpadded) would give, in eval mode, so
a model's output does not depend on how much padding its batch added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _expand(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a ``[B, T]`` mask to ``x`` of shape ``[B, C, T, ...]``."""
    return mask.view(mask.shape[0], 1, mask.shape[1], *([1] * (x.dim() - 3)))


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set padded frames of a ``[B, C, T, ...]`` map to 0 (what 'same' conv padding sees)."""
    if bool(mask.all()):  # fast path: a batch without padding
        return x
    return x.masked_fill(~_expand(mask, x), 0.0)


class MaskedBatchNorm(nn.Module):
    """Batch norm over channel dim 1 whose training statistics use real frames only.

    Works for ``[B, C, T]`` and ``[B, C, T, F]``. Statistics are masked sums (no gather or
    scatter), the normalisation one per-channel affine map; in eval mode the running statistics
    are used. Padded frames of the output are not zeroed: callers mask where it matters.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        shape = (1, -1) + (1,) * (x.dim() - 2)
        # momentum None = cumulative average (as nn.BatchNorm; used to recalibrate statistics)
        factor = bn.momentum
        if self.training:
            bn.num_batches_tracked += 1
            if factor is None:
                factor = 1.0 / float(bn.num_batches_tracked)
        if bool(mask.all()):  # fast path: no padding, the native (fused) batch norm
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                self.training, factor or 0.0, bn.eps)
        if self.training:
            # zero the padding, take the statistics of the whole tensor in one native
            # reduction, then rescale them from all positions to the real ones
            x = zero_padding(x, mask)
            dims = [0, *range(2, x.dim())]
            var_all, mean_all = torch.var_mean(x, dim=dims, unbiased=False)
            total = x.numel() / x.shape[1]
            n = mask.sum() * (total / mask.numel())
            ratio = total / n
            mean = mean_all * ratio
            var = ((var_all + mean_all * mean_all) * ratio - mean * mean).clamp_min(0.0)
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                bn.running_mean.lerp_(mean.detach(), factor)
                bn.running_var.lerp_(unbiased.detach(), factor)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale, shift = self._affine(mean, var)
        return torch.addcmul(shift.view(shape), x, scale.view(shape))

    def _affine(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        scale = bn.weight * torch.rsqrt(var + bn.eps)
        return scale, bn.bias - mean * scale

    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` per channel of the eval-mode map ``y = x * scale + shift``."""
        return self._affine(self.bn.running_mean, self.bn.running_var)


def masked_pool_time(x: torch.Tensor, mask: torch.Tensor, kernel: tuple[int, int],
                     kind: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping ``kernel = (kt, kf)`` pooling of ``[B, C, T, F]`` with ceil on time.

    A window at the end of an utterance pools only its real frames (as 'same'/ceil pooling of
    the unpadded utterance does), so the result is padding-independent. Frequency uses floor.
    Returns the pooled map (padding zeroed) and the new ``[B, ceil(T/kt)]`` mask.
    """
    kt, kf = kernel
    if kt == 1 and kf == 1:
        return x, mask
    if bool(mask.all()):  # fast path: no padding; ceil mode pools a last partial window over
        x = x[..., : x.shape[3] - x.shape[3] % kf]  # its real frames (floor on frequency)
        pool = F.max_pool2d if kind == "max" else F.avg_pool2d
        if kind not in ("max", "avg"):
            raise ValueError(f"pool kind must be max or avg, got {kind!r}")
        y = pool(x, (kt, kf), ceil_mode=True)
        return y, mask.new_ones(mask.shape[0], y.shape[2])
    pad = (-x.shape[2]) % kt
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
    m4 = _expand(mask, x)
    new_mask = mask.view(mask.shape[0], -1, kt).any(dim=2)
    if kind == "max":
        y = zero_padding(F.max_pool2d(x.masked_fill(~m4, float("-inf")), (kt, kf)), new_mask)
    elif kind == "avg":
        num = F.avg_pool2d(x.masked_fill(~m4, 0.0), (kt, kf))
        # share of real frames in each window: 1 except at an utterance's last window
        frac = F.avg_pool1d(mask.to(x.dtype).unsqueeze(1), kt).view(mask.shape[0], 1, -1, 1)
        y = num / frac.clamp_min(1e-8)
    else:
        raise ValueError(f"pool kind must be max or avg, got {kind!r}")
    return y, new_mask


class MaskedMaxPool1d(nn.Module):
    """Max pooling over time of ``[B, C, T]`` (stride ``stride``, padding ``kernel // 2``)
    that ignores padded frames; returns the pooled map (padding zeroed) and the new lengths.

    Every output window below an utterance's new length holds at least one of its real frames
    and otherwise only padding, which counts as ``-inf``, so the output equals that of the
    utterance alone."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, kernel // 2

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + 2 * self.padding - self.kernel) // self.stride + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = lengths_to_mask(lengths, x.shape[2]).unsqueeze(1)
        y = F.max_pool1d(x.masked_fill(~mask, float("-inf")), self.kernel, self.stride,
                         self.padding)
        new_lengths = self.out_lengths(lengths)
        new_mask = lengths_to_mask(new_lengths, y.shape[2]).unsqueeze(1)
        return y.masked_fill(~new_mask, 0.0), new_lengths
