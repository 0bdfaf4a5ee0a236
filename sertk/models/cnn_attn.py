"""``cnn_attn_baseline``: CNN + BiLSTM + structured self-attention (Ando et al., ICASSP 2021).

The non-adaptive backbone of the listener-adaptive model (papers.md section 11): three CNN layers
with 16, 24 and 32 channels, each BatchNorm-ReLU-2x2 max pooling; one BiLSTM layer of 128 units
with dropout 0.2; 4-head structured self-attention with dropout 0.2; two FC layers of 64 units
with dropout 0.2; softmax output. Input: 400-bin log power spectrogram (40/10 ms, NFFT 1600,
0-4 kHz), z-normalised with training statistics (the recipe's global CMVN).

Not specified by the paper, chosen here (and kept in ``conf/model/cnn_attn_baseline.yaml``):
3x3 kernels (papers.md's suggestion), 128 units per LSTM direction, attention hidden size 64
(``att_dim``), ReLU in the FC layers.
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers import (
    ConvBlock2d,
    StructuredSelfAttention,
    lengths_to_mask,
    zero_padding,
)
from sertk.models.registry import MODELS


@MODELS.register("cnn_attn_baseline", summary="CNN + BiLSTM + structured self-attention",
                 paper="Ando et al., Speech emotion recognition based on listener adaptive "
                       "models, ICASSP 2021")
class CnnAttnBaseline(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, channels: tuple[int, ...] = (16, 24, 32),
                 kernel: int = 3, pool: tuple[int, int] = (2, 2), lstm_hidden: int = 128,
                 att_heads: int = 4, att_dim: int = 64, fc_dims: tuple[int, ...] = (64, 64),
                 dropout: float = 0.2):
        super().__init__()
        blocks, in_ch, freq = [], 1, input_dim
        for ch in channels:
            blocks.append(ConvBlock2d(in_ch, ch, kernel, pool=tuple(pool), pool_kind="max"))
            in_ch, freq = ch, freq // pool[1]
        self.cnn = nn.ModuleList(blocks)
        self.lstm = nn.LSTM(in_ch * freq, lstm_hidden, batch_first=True, bidirectional=True)
        self.lstm_dropout = nn.Dropout(dropout)
        self.attention = StructuredSelfAttention(2 * lstm_hidden, att_dim, att_heads, dropout)
        layers: list[nn.Module] = []
        dim = self.attention.out_dim
        for h in fc_dims:
            layers += [nn.Linear(dim, h), nn.ReLU(), nn.Dropout(dropout)]
            dim = h
        layers.append(nn.Linear(dim, num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, D], padding zeroed
        for block in self.cnn:
            x, mask = block(x, mask)
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * F']
        lens = mask.sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lens.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        pooled = self.attention(self.lstm_dropout(h), mask)
        return self.head(pooled)
