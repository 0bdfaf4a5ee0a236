"""The rectangular-kernel CNN front of Li et al. (Interspeech 2018) and Xu et al. (ICASSP
2021): parallel time-context / frequency-context conv branches, then 3 x 3 conv blocks."""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers.conv import ConvBlock2d
from sertk.models.layers.masking import lengths_to_mask, zero_padding


def as_pool(p: tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """``None`` or ``[1, 1]`` -> no pooling; otherwise ``(time, frequency)``."""
    return None if p is None or tuple(p) == (1, 1) else (int(p[0]), int(p[1]))


class RectangularConvStack(nn.Module):
    """Parallel Conv-BN-ReLU branches with rectangular kernels, concatenated on channels,
    then Conv-BN-ReLU(-max pool) blocks with 3 x 3 kernels.

    ``branch_kernels`` are (frequency bins, frames), as the papers write them (10 x 2 covers
    100 Hz x 20 ms on a 10 Hz-per-bin spectrogram); the map is ``[B, C, T, F]`` (time first).
    ``pools`` has one (time, frequency) max pooling or ``None`` per 3 x 3 block. Input
    ``[B, T, F]`` with lengths; output ``([B, C, T', F'], mask [B, T'])``, padding zeroed.
    """

    def __init__(self, branch_kernels: tuple[tuple[int, int], ...] = ((10, 2), (2, 8)),
                 branch_channels: int = 16, channels: tuple[int, ...] = (32, 48, 64, 80),
                 pools: tuple[tuple[int, int] | None, ...] = ((2, 2), (2, 2), None, None)):
        super().__init__()
        if len(pools) != len(channels):
            raise ValueError("pools needs one entry (or null) per conv layer in channels")
        self.branches = nn.ModuleList(
            ConvBlock2d(1, branch_channels, (int(k[1]), int(k[0])), pool=None)
            for k in branch_kernels)
        blocks, in_ch = [], branch_channels * len(branch_kernels)
        for ch, pool in zip(channels, pools):
            blocks.append(ConvBlock2d(in_ch, ch, 3, pool=as_pool(pool), pool_kind="max"))
            in_ch = ch
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_ch

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, F], padding zeroed
        x = torch.cat([branch(x, mask)[0] for branch in self.branches], dim=1)
        for block in self.blocks:
            x, mask = block(x, mask)
        return x, mask
