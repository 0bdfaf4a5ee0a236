"""``hnsd``: Hierarchical Network based on Static and Dynamic features (Cao et al., ICASSP 2021),
papers.md section 2.

Encoding module: two separate LSTMs of 512 units encode the static log-mel stream ``X^s``
(26 log mel energies) and the dynamic stream ``X^d = [Y, Z]`` (their first and second
differences, 52 dims). Gated Multi-features Unit (GMU), per frame::

    h_s = tanh(W_s f^s),  h_d = tanh(W_d f^d),  z = sigmoid(W_c [f^s, f^d]),
    h = z * h_s + (1 - z) * h_d

with one scalar gate ``z`` per frame (``W_c`` maps the concatenation to one value).
Classification module: Bahdanau attention pooling ``s_t = V^T tanh(W h_t + b)`` with d = 16
(:class:`~sertk.models.layers.AdditiveAttentionPooling`, softmax over real frames), an FC layer
of 128 units and the softmax layer. Input: ``conf/feats/logmel26_deltas.yaml`` (78 dims, laid
out ``[static, delta, delta-delta]``); ``static_dims`` / ``dynamic_dims`` select the two
streams as ``[start, end)`` column ranges of the input.

Not specified by the paper, chosen here (and kept in ``conf/model/hnsd.yaml``): unidirectional
LSTMs (``bidirectional``), GMU width ``fusion_dim`` = 512 (H_s, matching the encoders), no biases
in the GMU (as its equations are written), ReLU and dropout 0.2 after the 128-unit FC layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import AdditiveAttentionPooling, lengths_to_mask
from sertk.models.registry import MODELS


def _encode(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Packed LSTM over ``x [B, T, D]``; frame outputs ``[B, T, H]``, zero on padding."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                               enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class GatedMultiFeatureUnit(nn.Module):
    """HNSD's GMU: ``h = z * tanh(W_s f_s) + (1 - z) * tanh(W_d f_d)`` with a scalar gate
    ``z = sigmoid(W_c [f_s, f_d])`` per frame. ``forward`` returns ``(h [B, T, H], z [B, T])``."""

    def __init__(self, static_dim: int, dynamic_dim: int, out_dim: int, bias: bool = False):
        super().__init__()
        self.w_s = nn.Linear(static_dim, out_dim, bias=bias)
        self.w_d = nn.Linear(dynamic_dim, out_dim, bias=bias)
        self.w_c = nn.Linear(static_dim + dynamic_dim, 1, bias=bias)

    def forward(self, f_s: torch.Tensor, f_d: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.sigmoid(self.w_c(torch.cat([f_s, f_d], dim=-1)))  # [B, T, 1]
        h = z * torch.tanh(self.w_s(f_s)) + (1.0 - z) * torch.tanh(self.w_d(f_d))
        return h, z.squeeze(-1)


@MODELS.register("hnsd", summary="static/dynamic log-mel LSTMs + gated fusion + attention",
                 paper="Cao et al., Hierarchical network based on the fusion of static and "
                       "dynamic features for speech emotion recognition, ICASSP 2021")
class HNSD(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 static_dims: Sequence[int] = (0, 26), dynamic_dims: Sequence[int] = (26, 78),
                 hidden: int = 512, bidirectional: bool = False, fusion_dim: int = 512,
                 att_dim: int = 16, fc_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        for name, (start, end) in (("static_dims", static_dims), ("dynamic_dims", dynamic_dims)):
            if not 0 <= start < end <= input_dim:
                raise SertkError(f"hnsd: {name} [{start}, {end}) is not a column range of the "
                                 f"{input_dim}-dim input")
        self.static = slice(*map(int, static_dims))
        self.dynamic = slice(*map(int, dynamic_dims))
        dirs = 2 if bidirectional else 1
        self.static_lstm = nn.LSTM(static_dims[1] - static_dims[0], hidden, batch_first=True,
                                   bidirectional=bidirectional)
        self.dynamic_lstm = nn.LSTM(dynamic_dims[1] - dynamic_dims[0], hidden, batch_first=True,
                                    bidirectional=bidirectional)
        self.gmu = GatedMultiFeatureUnit(dirs * hidden, dirs * hidden, fusion_dim)
        self.attention = AdditiveAttentionPooling(fusion_dim, att_dim)
        self.head = nn.Sequential(nn.Linear(fusion_dim, fc_dim), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(fc_dim, num_classes))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        f_s = _encode(self.static_lstm, feats[..., self.static], lengths)
        f_d = _encode(self.dynamic_lstm, feats[..., self.dynamic], lengths)
        h, _ = self.gmu(f_s, f_d)
        return self.head(self.attention(h, mask))
