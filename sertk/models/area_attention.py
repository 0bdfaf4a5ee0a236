"""``area_attention``: CNN with multiscale area attention (Xu et al., ICASSP 2021), papers.md
section 8.

Five conv layers, one area-attention layer, one FC layer. The first stage is two parallel
convs with rectangular kernels (10 x 2 and 2 x 8, frequency x time), each Conv-BN-ReLU, their
outputs concatenated; then Conv2-Conv5 (3 x 3, BN, ReLU) with 2 x 2 max pooling after Conv2 and
Conv3 (``layers/rect_conv.py``, shared with ``attpool_cnn``). Scaled dot-product area attention
(``layers/area_attention.py``) runs from every cell of the last map to every area of up to
3 x 3 cells (the paper's best size with VTLP); the area key is the cells' max (the paper's best
area feature), mean or a sample. The paper trains on 2 s segments (1 s hop; 0.4 s hop at test,
segment posteriors averaged) with 7 VTLP copies. Input: the authors' librosa log-mel (128
bins, 50 ms / 25 ms; ``conf/feats/logmel128_librosa.yaml``).

Not fixed by the paper, taken from the authors' code (lessonxmk/Optimized_attention_for_SER,
``model.py`` AACNN): channels 16 + 16, 32, 48, 64, 80; pooling after Conv2 and Conv3; dropout
0.5 on the attention weights. (The code's tensor2tensor call treats each frequency row as a
head over the time steps; sertk attends over the whole 2-D map, as the paper describes.)
Not fixed by the paper or the code, chosen here: the branches are concatenated along
channels (the code concatenates along frequency); Q, K, V are learned
linear maps of size ``att_dim`` 80 (the paper's "linear projections"; the code uses the map
itself, ``att_dim: null``); the area value is the cells' ``max`` like the key (papers.md's
reading of "Max"; tensor2tensor's reference is key mean, value sum: ``area_value: sum``);
a further 2 x 2 max pooling before the attention (``att_pool``) keeps the number of areas
small, as papers.md advises; the attention output is averaged over the real cells before the
FC layer (the code flattens a fixed 2 s map), so any length works.
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers import masked_mean_2d, masked_pool_time
from sertk.models.layers.area_attention import AreaAttention2d
from sertk.models.layers.rect_conv import RectangularConvStack, as_pool
from sertk.models.registry import MODELS


@MODELS.register("area_attention", summary="rectangular-kernel CNN + multiscale area attention",
                 paper="Xu et al., Speech emotion recognition with multiscale area attention "
                       "and data augmentation, ICASSP 2021")
class AreaAttentionCNN(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 branch_kernels: tuple[tuple[int, int], ...] = ((10, 2), (2, 8)),
                 branch_channels: int = 16, channels: tuple[int, ...] = (32, 48, 64, 80),
                 pools: tuple[tuple[int, int] | None, ...] = ((2, 2), (2, 2), None, None),
                 att_pool: tuple[int, int] | None = (2, 2), att_dim: int | None = 80,
                 max_area: tuple[int, int] = (3, 3), area_feature: str = "max",
                 area_value: str = "max", att_dropout: float = 0.5):
        super().__init__()
        del input_dim  # fully convolutional: any number of mel bins works
        self.cnn = RectangularConvStack(branch_kernels, branch_channels, channels, pools)
        self.att_pool = as_pool(att_pool)
        self.attention = AreaAttention2d(self.cnn.out_channels, att_dim, tuple(max_area),
                                         area_feature, area_value, att_dropout)
        self.out = nn.Linear(self.attention.out_dim, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, mask = self.cnn(feats, lengths)
        if self.att_pool is not None:
            x, mask = masked_pool_time(x, mask, self.att_pool, "max")
        x = self.attention(x, mask)  # [B, D, T', F'], padding zeroed
        return self.out(masked_mean_2d(x, mask))
