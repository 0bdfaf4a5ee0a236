"""``att_lstm``: attention-based LSTM (Xie et al., IEEE/ACM TASLP 2019), papers.md section 3.

Three ideas, combined by ``variant``:

* **Attention gate (AT).** The forget gate is replaced by a gate computed by attention over the
  previous cell state only (not ``x_t`` or ``h_{t-1}``)::

      f_t = sigmoid(W_2 tanh(W_1 c_{t-1} + b_1) + b_2)

  The paper does not give the equation; this is papers.md's documented placeholder.
  ``W_1`` maps H -> ``gate_att_dim`` (128 here, below (D + H) / 2 so the gate costs fewer
  multiply-adds than the ``W_f [x_t, h_{t-1}]`` it replaces, as the paper claims).
  :class:`AttentionGateLSTMCell` runs in a masked Python time loop (slow; ``nn.LSTM`` is used
  for the variants without it).
* **Time attention (T).** ``e_t = o_T^T W o_t`` with the last real output ``o_T`` as the query,
  ``output_T = sum_t softmax(e)_t o_t`` over real frames.
* **Feature attention (F).** ``beta = softmax(W_F mean_t o_t)`` over the H output dimensions,
  ``output_F = beta * sum_t o_t`` (papers.md's suggestion; sums over real frames only).

The pooled vector (``[output_T, output_F]`` when both; the last output ``o_T`` when neither)
goes through FC layers ``[256, 128]`` (``[512, 128]`` with time + feature attention) and the
output layer. Variants (``variant``):

==============  ==========================================================
``lstm``        plain LSTM, last output (the paper's baseline)
``lstm_t``      LSTM + time attention
``lstm_f``      LSTM + feature attention
``lstm_at``     attention-gate LSTM, last output
``lstm_tf``     LSTM + time and feature attention
``lstm_tf_at``  the full model: attention-gate LSTM + time and feature attention
==============  ==========================================================

Input: the paper's 93-d modified openSMILE ComParE LLD set is not a stock config; the stand-in
is ``conf/feats/compare2016_lld.yaml`` (ComParE_2016 LLDs + deltas, 130 dims; see
``sertk/features/opensmile_fe.py``).

Not specified by the paper, chosen here (and kept in ``conf/model/att_lstm.yaml``): the gate
equation above and ``gate_att_dim`` 128; one unidirectional LSTM layer of 256 units (papers.md's
suggestion; ``num_layers``); the bilinear time-attention and softmax feature-attention forms;
ReLU and dropout 0.2 in the FC layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import lengths_to_mask
from sertk.models.layers.recurrent import MaskedRNN
from sertk.models.registry import MODELS

VARIANTS = {  # variant -> (time attention, feature attention, attention gate)
    "lstm": (False, False, False),
    "lstm_t": (True, False, False),
    "lstm_f": (False, True, False),
    "lstm_at": (False, False, True),
    "lstm_tf": (True, True, False),
    "lstm_tf_at": (True, True, True),
}


class AttentionGateLSTMCell(nn.Module):
    """LSTM cell whose forget gate attends to the previous cell state only (LSTM-AT).

    ``attention_gate=False`` gives a standard LSTM cell (gate order i, f, g, o as
    ``nn.LSTMCell``; ``x_proj.bias`` plays the role of ``bias_ih + bias_hh``). Follows the cell
    protocol of :mod:`sertk.models.layers.recurrent`; state ``(h, c)``.
    """

    def __init__(self, input_size: int, hidden_size: int, attention_gate: bool = True,
                 att_dim: int = 128):
        super().__init__()
        self.hidden_size = hidden_size
        self.attention_gate = attention_gate
        gates = 3 if attention_gate else 4
        self.x_proj = nn.Linear(input_size, gates * hidden_size)
        self.h_proj = nn.Linear(hidden_size, gates * hidden_size, bias=False)
        if attention_gate:
            self.gate_att = nn.Linear(hidden_size, att_dim)
            self.gate_out = nn.Linear(att_dim, hidden_size)

    def forget_gate(self, c_prev: torch.Tensor) -> torch.Tensor:
        """``f_t = sigmoid(W_2 tanh(W_1 c_{t-1} + b_1) + b_2)``, in (0, 1)."""
        return torch.sigmoid(self.gate_out(torch.tanh(self.gate_att(c_prev))))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.x_proj(x)

    def initial_state(self, batch: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = ref.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    def forward(self, xp: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        g = xp + self.h_proj(h)
        if self.attention_gate:
            i, cand, o = g.chunk(3, dim=-1)
            f = self.forget_gate(c)
        else:
            i, f, cand, o = g.chunk(4, dim=-1)
            f = torch.sigmoid(f)
        c = f * c + torch.sigmoid(i) * torch.tanh(cand)
        return torch.sigmoid(o) * torch.tanh(c), c


class TimeAttention(nn.Module):
    """``e_t = o_T^T W o_t`` (query: the last real output), softmax over real frames."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Linear(dim, dim, bias=False)

    def forward(self, o: torch.Tensor, last: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = torch.einsum("btd,bd->bt", o, self.w(last)).masked_fill(~mask, float("-inf"))
        return torch.einsum("bt,btd->bd", torch.softmax(e, dim=1), o)


class FeatureAttention(nn.Module):
    """``beta = softmax(W_F mean_t o_t)`` over the output dimensions; ``beta * sum_t o_t``."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Linear(dim, dim)

    def forward(self, o: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = o.masked_fill(~mask.unsqueeze(-1), 0.0).sum(1)
        mean = total / mask.sum(1, keepdim=True).clamp_min(1).to(o.dtype)
        return torch.softmax(self.w(mean), dim=-1) * total


@MODELS.register("att_lstm", summary="LSTM with attention forget gate + time/feature attention",
                 paper="Xie et al., Speech emotion classification using attention-based LSTM, "
                       "IEEE/ACM TASLP 2019")
class AttLSTM(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, variant: str = "lstm_tf_at",
                 hidden: int = 256, num_layers: int = 1, gate_att_dim: int = 128,
                 fc_dims: Sequence[int] | None = None, dropout: float = 0.2):
        super().__init__()
        if variant not in VARIANTS:
            raise SertkError(f"att_lstm: unknown variant {variant!r}; known: "
                             f"{', '.join(VARIANTS)}")
        self.variant = variant
        use_t, use_f, use_at = VARIANTS[variant]
        if use_at:
            self.rnn: nn.Module = nn.ModuleList(
                MaskedRNN(lambda d=d: AttentionGateLSTMCell(d, hidden, True, gate_att_dim))
                for d in [input_dim] + [hidden] * (num_layers - 1))
        else:
            self.rnn = nn.LSTM(input_dim, hidden, num_layers=num_layers, batch_first=True)
        self.time_att = TimeAttention(hidden) if use_t else None
        self.feat_att = FeatureAttention(hidden) if use_f else None
        dim = hidden * max(1, int(use_t) + int(use_f))
        layers: list[nn.Module] = []
        for width in (fc_dims if fc_dims is not None else (dim, 128)):
            layers += [nn.Linear(dim, width), nn.ReLU(), nn.Dropout(dropout)]
            dim = width
        layers.append(nn.Linear(dim, num_classes))
        self.head = nn.Sequential(*layers)

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame outputs ``[B, T, H]`` (zero on padding) and the last real output ``[B, H]``."""
        if isinstance(self.rnn, nn.LSTM):
            packed = nn.utils.rnn.pack_padded_sequence(feats, lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, (h_n, _) = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                      total_length=feats.shape[1])
            return out, h_n[-1]
        out = feats
        for layer in self.rnn:
            out, last = layer(out, mask)
        return out, last

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        out, last = self.encode(feats, lengths, mask)
        pooled = []
        if self.time_att is not None:
            pooled.append(self.time_att(out, last, mask))
        if self.feat_att is not None:
            pooled.append(self.feat_att(out, mask))
        return self.head(torch.cat(pooled, dim=-1) if pooled else last)
