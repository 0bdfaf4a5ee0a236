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
    return x.masked_fill(~_expand(mask, x), 0.0)


class MaskedBatchNorm(nn.Module):
    """Batch norm over channel dim 1 whose training statistics use real frames only.

    Works for ``[B, C, T]`` and ``[B, C, T, F]``; in eval mode it is the usual affine map with
    running statistics. Padded frames are returned as 0.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.training:
            bn = self.bn
            shape = (1, -1) + (1,) * (x.dim() - 2)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            return zero_padding(x * scale.view(shape) + shift.view(shape), mask)
        xt = x.movedim(1, -1)  # [B, T, ..., C]
        valid = xt[mask]  # [N, ..., C]
        normed = F.batch_norm(valid.reshape(-1, valid.shape[-1]), self.bn.running_mean,
                              self.bn.running_var, self.bn.weight, self.bn.bias, True,
                              self.bn.momentum, self.bn.eps)
        out = xt.new_zeros(xt.shape)
        out[mask] = normed.view(valid.shape)
        return out.movedim(-1, 1)


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
    pad = (-x.shape[2]) % kt
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
    m4 = _expand(mask, x)
    if kind == "max":
        y = F.max_pool2d(x.masked_fill(~m4, float("-inf")), (kt, kf))
    elif kind == "avg":
        num = F.avg_pool2d(x.masked_fill(~m4, 0.0), (kt, kf))
        den = F.avg_pool2d(m4.to(x.dtype).expand(-1, 1, -1, x.shape[3]), (kt, kf))
        y = num / den.clamp_min(1e-8)
    else:
        raise ValueError(f"pool kind must be max or avg, got {kind!r}")
    new_mask = mask.view(mask.shape[0], -1, kt).any(dim=2)
    return zero_padding(y, new_mask), new_mask
