"""``stl_transformer``: CNN-BiLSTM with Stacked Transformer Layers (Wang et al., ICASSP 2021),
papers.md section 5.

Six CNN-pooling pairs (2-D conv, BatchNorm, ELU, average pooling, dropout) over the
``[frames, features]`` map, the pooled map reshaped to ``[T', C * F']``, a BiLSTM, a 1-D
convolution to the model width, ``L = 5`` stacked Transformer encoder layers (multi-head
self-attention + position-wise FFN with residual connections, no positional encoding), mean
pooling over the tokens and a linear softmax classifier.

The paper describes ``Z_0`` as one vector, for which self-attention is degenerate; as papers.md
suggests, the 1-D convolution keeps the BiLSTM's ``T'`` positions, the STL runs over them (with
a key padding mask) and the result is mean-pooled over real positions. The Transformer layers
follow the authors' ``modules/SAEncoder.py`` (HW-AARC-CLUB/ICASSP_SER): pre-LayerNorm, ReLU FFN
of 4x the width, a final LayerNorm; their code adds sinusoidal positions, the paper says there
are none -- the paper is followed. Their data script uses 40 log-mel bands (librosa, 10 s fixed
length); sertk's config uses 40 Kaldi log-mel filterbanks (``conf/feats/fbank40.yaml``, 25/10 ms;
the paper's "frame-level LLDs" are not specified).

Not fixed by the paper (chosen to come close to the paper's 356K parameters without and 468K
with the STL for 4 classes and 40 bins: 368K and 480K here; kept in
``conf/model/stl_transformer.yaml``): channels 16, 32, 64, 96, 128, 128; 3x3 kernels; 2x2
average pooling (``n_ap = 2``; the last pair pools time only, 40 bins being used up after five
halvings) with ceil on time; dropout 0.1 after each pair; ``d_lstm = 24`` (so
``d_model = 2 d_lstm = 48``); kernel-1 1-D convolution; 4 heads (the repository's default);
FFN 128; dropout 0.1 in the STL and before the classifier.

``attention: key_sparse`` (not in Wang et al.) replaces the STL's full self-attention with the
key-sparse attention of Chen et al. (ICASSP 2022, papers.md section 24;
:class:`~sertk.models.layers.ks_attention.KeySparseAttention`): only the top
``ceil(ks_ratio * T')`` keys by attention column sum (or ``ks_topk`` keys) keep their weights,
chosen per head (``ks_scope: per_head``) or for all heads (``shared``). ``ks_ratio`` 0.5 is
that paper's default. The default ``attention: full`` is Wang et al.'s model.
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import (
    ConvBlock2d,
    key_padding_mask,
    lengths_to_mask,
    masked_mean,
    zero_padding,
)
from sertk.models.layers.ks_attention import KeySparseAttention
from sertk.models.registry import MODELS

ATTENTIONS = ("full", "key_sparse")


@MODELS.register("stl_transformer", summary="6 conv/avg-pool pairs + BiLSTM + 5 stacked "
                 "transformer layers",
                 paper="Wang et al., A Novel End-to-End Speech Emotion Recognition Network with "
                       "Stacked Transformer Layers, ICASSP 2021")
class STLTransformer(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 channels: tuple[int, ...] = (16, 32, 64, 96, 128, 128), kernel: int = 3,
                 pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2),
                                                       (2, 1)),
                 conv_dropout: float = 0.1, lstm_hidden: int = 24, num_layers: int = 5,
                 heads: int = 4, ffn_dim: int = 128, stl_dropout: float = 0.1,
                 dropout: float = 0.1, attention: str = "full", ks_ratio: float = 0.5,
                 ks_topk: int | None = None, ks_scope: str = "per_head"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise SertkError(f"stl_transformer attention must be one of {', '.join(ATTENTIONS)}"
                             f", got {attention!r}")
        if len(pools) != len(channels):
            raise ValueError("pools needs one (time, freq) pool per conv layer")
        blocks, in_ch, freq = [], 1, input_dim
        for ch, pool in zip(channels, pools):
            blocks.append(ConvBlock2d(in_ch, ch, kernel, pool=tuple(pool), pool_kind="avg",
                                      activation="elu"))
            in_ch, freq = ch, freq // pool[1]
        if freq < 1:
            raise ValueError(f"{input_dim} feature bins cannot be pooled by {pools}")
        self.cnn = nn.ModuleList(blocks)
        self.conv_dropout = nn.Dropout(conv_dropout)
        self.lstm = nn.LSTM(in_ch * freq, lstm_hidden, batch_first=True, bidirectional=True)
        d_model = 2 * lstm_hidden
        self.proj = nn.Conv1d(d_model, d_model, kernel_size=1)
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn_dim, stl_dropout,
                                           activation="relu", batch_first=True, norm_first=True)
        if attention == "key_sparse":  # same parameters as full attention, sparse keys
            layer.self_attn = KeySparseAttention(d_model, heads, stl_dropout, ratio=ks_ratio,
                                                 topk=ks_topk, scope=ks_scope)
        self.stl = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model),
                                         enable_nested_tensor=False)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, D], padding zeroed
        for block in self.cnn:
            x, mask = block(x, mask)
            x = self.conv_dropout(x)
        x = x.permute(0, 2, 1, 3).flatten(2)  # H^re: [B, T', C * F']
        packed = nn.utils.rnn.pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        z = self.proj(h.transpose(1, 2)).transpose(1, 2)  # Z_0: [B, T', d_model]
        z = self.stl(z, src_key_padding_mask=key_padding_mask(mask))
        return self.out(self.dropout(masked_mean(z, mask)))
