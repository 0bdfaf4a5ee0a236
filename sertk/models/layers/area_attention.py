"""Multiscale area attention over a 2-D feature map (Li et al., "Area Attention", ICML 2019;
used for SER by Xu et al., ICASSP 2021).

Queries are the cells of a ``[B, C, T, F]`` map; keys and values are all *areas* of
contiguous cells of ``h x w`` (1 <= h <= max_h along time, 1 <= w <= max_w along frequency),
enumerated with stride-1 pooling at every area shape and concatenated. Attention is the
scaled dot product ``softmax(Q K^T / sqrt(d)) V`` over all areas; with a maximum area of 1 x 1
it is plain dot-product attention over the cells.

Area features: the key of an area is the ``max``, ``mean`` or a ``sample`` (mean + std * N(0, 1)
in training, the mean in eval, as tensor2tensor's ``area_key_mode="sample"``) of its cells; the
value is their ``max``, ``mean`` or ``sum`` (the reference definition is key mean, value sum).

Padding: an area that covers a padded frame is masked out of every softmax, so the output at
real cells does not depend on the padding; the output's padded frames are zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sertk.models.layers.masking import lengths_to_mask, zero_padding

KEY_MODES = ("max", "mean", "sample")
VALUE_MODES = ("max", "mean", "sum")


class AreaAttention2d(nn.Module):
    """Self-attention from every cell of ``x [B, C, T, F]`` to every area of up to
    ``max_area = (max_h, max_w)`` cells (time x frequency) -> ``[B, out_dim, T, F]``.

    ``att_dim``: size of the learned linear projections Q, K, V of the cells (no bias);
    ``None`` uses the cells themselves (Q = K = V = x). Projections are applied per cell
    before the area features are taken. ``dropout`` acts on the attention weights.
    """

    def __init__(self, in_dim: int, att_dim: int | None = None,
                 max_area: tuple[int, int] = (3, 3), area_key: str = "max",
                 area_value: str = "sum", dropout: float = 0.0):
        super().__init__()
        if area_key not in KEY_MODES:
            raise ValueError(f"area_key must be one of {KEY_MODES}, got {area_key!r}")
        if area_value not in VALUE_MODES:
            raise ValueError(f"area_value must be one of {VALUE_MODES}, got {area_value!r}")
        self.max_area = (int(max_area[0]), int(max_area[1]))
        if min(self.max_area) < 1:
            raise ValueError(f"max_area must be >= 1 x 1, got {max_area}")
        self.area_key, self.area_value = area_key, area_value
        if att_dim is None:
            self.q = self.k = self.v = None
            self.out_dim = in_dim
        else:
            self.q = nn.Linear(in_dim, att_dim, bias=False)
            self.k = nn.Linear(in_dim, att_dim, bias=False)
            self.v = nn.Linear(in_dim, att_dim, bias=False)
            self.out_dim = att_dim
        self.dropout = nn.Dropout(dropout)

    def area_shapes(self, t: int, f: int) -> list[tuple[int, int]]:
        """Area shapes (h, w) that fit in a ``t x f`` map."""
        return [(h, w) for h in range(1, min(self.max_area[0], t) + 1)
                for w in range(1, min(self.max_area[1], f) + 1)]

    def areas(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys ``[B, A, D]``, values ``[B, A, Dv]`` and validity ``[B, A]`` of all areas of
        ``k [B, D, T, F]`` / ``v [B, Dv, T, F]``."""
        b, _, t, f = k.shape
        lengths = mask.sum(1)
        keys, values, valid = [], [], []
        for h, w in self.area_shapes(t, f):
            if h == 1 and w == 1:
                ak, av = k, v
            else:
                size = (h, w)
                mean_k = F.avg_pool2d(k, size, stride=1)
                if self.area_key == "max":
                    ak = F.max_pool2d(k, size, stride=1)
                elif self.area_key == "sample" and self.training:
                    var = (F.avg_pool2d(k * k, size, stride=1) - mean_k * mean_k)
                    # float32 so the floor survives AMP; zero gradient where var ~ 0
                    std = var.float().clamp_min(1e-12).sqrt().to(k.dtype)
                    ak = mean_k + std * torch.randn_like(std)
                else:  # mean, or sample in eval mode
                    ak = mean_k
                if self.area_value == "max":
                    av = F.max_pool2d(v, size, stride=1)
                else:
                    av = F.avg_pool2d(v, size, stride=1)
                    if self.area_value == "sum":
                        av = av * (h * w)
            # an area starting at frame s is real iff s + h - 1 < length
            ok = lengths_to_mask((lengths - h + 1).clamp_min(0), t - h + 1)
            keys.append(ak.flatten(2))
            values.append(av.flatten(2))
            valid.append(ok[:, :, None].expand(b, t - h + 1, f - w + 1).reshape(b, -1))
        return (torch.cat(keys, 2).transpose(1, 2), torch.cat(values, 2).transpose(1, 2),
                torch.cat(valid, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, t, f = x.shape
        cells = x.permute(0, 2, 3, 1)  # [B, T, F, C]
        if self.q is None:
            q = k = v = cells
        else:
            q, k, v = self.q(cells), self.k(cells), self.v(cells)
        keys, values, valid = self.areas(k.permute(0, 3, 1, 2), v.permute(0, 3, 1, 2), mask)
        scores = q.reshape(b, t * f, -1) @ keys.transpose(1, 2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))  # [B, T*F, A]
        out = (weights @ values).view(b, t, f, -1).permute(0, 3, 1, 2)
        return zero_padding(out, mask)
