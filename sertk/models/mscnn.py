"""``mscnn_spu``: multi-scale CNN with statistical pooling units (Peng et al., ICASSP 2021),
papers.md section 9 -- the audio path only.

MSCNN: parallel single-layer convs with ReLU, 128 filters each, kernel ``(s, d)`` for every
``s`` in ``kernel_sizes``: each kernel spans the whole MFCC vector (``d = input_dim``) and ``s``
frames, i.e. a 1-D conv over time with the coefficients as input channels. SPU: global max,
average and standard deviation over the real frames of every branch. The pooled vectors are
concatenated, then dropout 0.3 and a dense softmax layer (papers.md's suggested classifier).

Out of scope (the paper's multimodal parts, not implemented): the text MSCNN over GloVe
embeddings with SWEM-max/avg features, the audio-guided attention over the text maps
(``mscnn_spu_att``) and the Kaldi VoxCeleb x-vector appended to the audio SPU output; sertk's
models take one audio feature sequence. The audio-only model is the paper's audio branch.

Not fixed by the paper, chosen here: ``kernel_sizes`` 1-5 frames (papers.md's suggestion),
'same' zero padding along time (the paper's centred sum), a population standard deviation,
no hidden classifier layer; input 40-d MFCC at 25/10 ms, 16 kHz (``conf/feats/mfcc40.yaml``).
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers import lengths_to_mask, masked_max, masked_mean, masked_std
from sertk.models.registry import MODELS


class StatisticalPoolingUnit(nn.Module):
    """Max, mean and standard deviation over the real frames of ``[B, T, D]`` -> ``[B, 3D]``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([masked_max(x, mask), masked_mean(x, mask), masked_std(x, mask)], dim=-1)


@MODELS.register("mscnn_spu", summary="multi-scale CNN + statistical pooling (audio path)",
                 paper="Peng et al., Efficient speech emotion recognition using multi-scale "
                       "CNN and attention, ICASSP 2021")
class MSCNNSPU(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 kernel_sizes: tuple[int, ...] = (1, 2, 3, 4, 5), channels: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(input_dim, channels, int(s), padding="same") for s in kernel_sizes)
        self.spu = StatisticalPoolingUnit()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(3 * channels * len(kernel_sizes), num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = feats.masked_fill(~mask.unsqueeze(-1), 0.0).transpose(1, 2)  # [B, D, T]
        pooled = [self.spu(torch.relu(conv(x)).transpose(1, 2), mask) for conv in self.convs]
        return self.out(self.dropout(torch.cat(pooled, dim=-1)))
