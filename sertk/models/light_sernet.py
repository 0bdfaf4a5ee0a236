"""``light_sernet``: LIGHT-SERNET (Aftab et al., ICASSP 2022), papers.md section 1.

Body part I: three parallel conv paths over the MFCC map -- 11 frames x 1 coefficient
(temporal), 1 x 9 (spectral) and 3 x 3 -- each Conv-BN-ReLU-2x2 average pooling, concatenated.
Body part II: LFLBs (Conv-BN-ReLU-AvgPool) with 64, 96, 128, 160 channels (3x3 kernels, pools
2x2, 2x2, 2x1, 2x1 over time x frequency), then a 1x1 conv to 320 channels with global average
pooling. Head: dropout 0.3 and the softmax layer. Fully convolutional: any input length.

The paper leaves filters, LFLB count/sizes and pools unspecified; the values above are those of
the authors' repository (AryaAftab/LIGHT-SERNET, ``models.py``), as papers.md recommends. The
paper's 9x1 / 1x11 naming and the repository's (11, 1) / (1, 9) kernels on a (frames, coeffs)
map describe the same paths. The repository applies L2 1e-6 to the LFLB convs only; sertk's
optimiser applies ``weight_decay`` to all weights (config ``optim.weight_decay``).
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers import (
    ConvBlock2d,
    lengths_to_mask,
    masked_mean_2d,
    zero_padding,
)
from sertk.models.registry import MODELS


@MODELS.register("light_sernet", summary="parallel 11x1/1x9/3x3 paths + LFLBs + GAP",
                 paper="Aftab et al., LIGHT-SERNET, ICASSP 2022")
class LightSERNet(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, path_channels: int = 32,
                 temporal_kernel: int = 11, spectral_kernel: int = 9,
                 lflb_channels: tuple[int, ...] = (64, 96, 128, 160),
                 lflb_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 1), (2, 1)),
                 final_channels: int = 320, dropout: float = 0.3):
        super().__init__()
        del input_dim  # fully convolutional: any number of coefficients works
        kernels = [(temporal_kernel, 1), (1, spectral_kernel), (3, 3)]
        self.paths = nn.ModuleList(
            ConvBlock2d(1, path_channels, k, pool=(2, 2), pool_kind="avg") for k in kernels)
        blocks, in_ch = [], path_channels * len(kernels)
        for ch, pool in zip(lflb_channels, lflb_pools):
            blocks.append(ConvBlock2d(in_ch, ch, 3, pool=tuple(pool), pool_kind="avg",
                                      bias=False))
            in_ch = ch
        blocks.append(ConvBlock2d(in_ch, final_channels, 1, pool=None, bias=False))
        self.lflbs = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(final_channels, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, D], padding zeroed
        outs = [path(x, mask) for path in self.paths]
        x, mask = torch.cat([o[0] for o in outs], dim=1), outs[0][1]
        for block in self.lflbs:
            x, mask = block(x, mask)
        return self.out(self.dropout(masked_mean_2d(x, mask)))
