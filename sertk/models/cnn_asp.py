"""``cnn_asp``: a plain CNN with attentive statistics pooling, sertk's from-scratch baseline.

Blocks of ``convs_per_block`` padding-aware 3x3 Conv-BN-ReLU layers (optionally residual, with
squeeze-and-excitation) each followed by 2x2 max pooling; the frequency axis is then averaged
(or flattened, ``freq_pool: flatten``), attentive statistics pooling (Okabe et al. 2018) gives
mean and standard deviation over real frames, and an FC embedding with dropout feeds the
classifier (``embed_dim: 0``: dropout and a linear classifier on the pooled statistics;
``att_hidden: 0``: attention weights from one linear layer). The issue-5 calibration baseline
is 4 blocks of 32-64-128-128 channels on 64 log-mel. Not from a paper: every value is a
config choice (``conf/model/cnn_asp.yaml``).
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers import (
    AttentiveStatsPooling,
    ConvBlock2d,
    StatsPooling,
    lengths_to_mask,
    masked_pool_time,
    zero_padding,
)
from sertk.models.layers.masking import MaskedBatchNorm
from sertk.models.registry import MODELS


class SqueezeExcite(nn.Module):
    """Channel attention from the mean over real frames (Hu et al., CVPR 2018)."""

    def __init__(self, ch: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(ch, max(4, ch // reduction)), nn.ReLU(),
                                nn.Linear(max(4, ch // reduction), ch), nn.Sigmoid())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.view(mask.shape[0], 1, -1, 1).to(x.dtype)
        mean = (x * m).sum((2, 3)) / (m.sum((2, 3)) * x.shape[3]).clamp_min(1.0)
        return x * self.fc(mean)[:, :, None, None]


class CnnBlock(nn.Module):
    """``n`` 3x3 conv layers (+ SE, + residual shortcut) then 2x2 max pooling."""

    def __init__(self, in_ch: int, out_ch: int, n: int = 1, residual: bool = False,
                 se: bool = False, pool: tuple[int, int] = (2, 2)):
        super().__init__()
        self.convs = nn.ModuleList(ConvBlock2d(in_ch if i == 0 else out_ch, out_ch, 3,
                                               activation="none" if residual and i == n - 1
                                               else "relu") for i in range(n))
        self.se = SqueezeExcite(out_ch) if se else None
        self.residual = residual
        if residual:
            self.short = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else None
            self.short_bn = MaskedBatchNorm(out_ch) if in_ch != out_ch else None
        self.pool = pool

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x
        for conv in self.convs:
            y, _ = conv(y, mask)
        if self.se is not None:
            y = self.se(y, mask)
        if self.residual:
            s = x if self.short is None else self.short_bn(self.short(x), mask)
            y = zero_padding(torch.relu(y + s), mask)
        return masked_pool_time(y, mask, self.pool, "max")


@MODELS.register("cnn_asp", summary="plain CNN blocks + attentive statistics pooling",
                 paper="sertk baseline (issue 5); pooling: Okabe et al., Interspeech 2018")
class CnnASP(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 channels: tuple[int, ...] = (32, 64, 128, 128), convs_per_block: int = 1,
                 residual: bool = False, se: bool = False, freq_pool: str = "mean",
                 pooling: str = "attentive", att_hidden: int = 128, embed_dim: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        blocks, in_ch, freq = [], 1, input_dim
        for ch in channels:
            blocks.append(CnnBlock(in_ch, ch, convs_per_block, residual, se))
            in_ch, freq = ch, freq // 2
        self.blocks = nn.ModuleList(blocks)
        if freq_pool not in ("mean", "flatten"):
            raise ValueError(f"freq_pool must be mean or flatten, got {freq_pool!r}")
        self.freq_pool = freq_pool
        dim = in_ch * (freq if freq_pool == "flatten" else 1)
        self.pool = AttentiveStatsPooling(dim, att_hidden) if pooling == "attentive" \
            else StatsPooling()
        if embed_dim > 0:
            self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, embed_dim),
                                       nn.ReLU(), nn.Dropout(dropout))
        else:
            self.embed = nn.Dropout(dropout)
        self.out = nn.Linear(embed_dim if embed_dim > 0 else 2 * dim, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)
        for block in self.blocks:
            x, mask = block(x, mask)
        x = x.mean(3) if self.freq_pool == "mean" else x.permute(0, 1, 3, 2).flatten(1, 2)
        x = x.transpose(1, 2)  # [B, T', C]
        return self.out(self.embed(self.pool(x, mask)))
