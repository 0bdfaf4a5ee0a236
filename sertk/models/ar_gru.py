"""``ar_gru``: GRU/BiGRU with AReLU inside the cell (Rajamani et al., ICASSP 2021), papers.md
section 4.

The paper modifies the Interaction-Aware Attention Network (IAAN, Yeh et al., ICASSP 2019):
inside every GRU cell the candidate-state tanh is replaced by AReLU, giving the AR-GRU::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = AReLU(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

AReLU (Chen et al. 2020) as in its reference implementation: ``F(x) = C(alpha) x`` for
``x < 0`` and ``(1 + sigmoid(beta)) x`` for ``x >= 0``, ``C`` clamping alpha to [0.01, 0.99].
papers.md's formula writes ``ReLU(x) + L(x)`` with the positive case as ``x = 0``; read
literally that would give a gain of ``2 + sigmoid(beta)`` on positive inputs, so the original
definition (total gain ``1 + sigmoid(beta)``) is used. Two learnable scalars per cell (one
AReLU per direction), initialised to the paper's best setting alpha = 0.01, beta = 1. The gates
keep their sigmoids. ``activation: tanh`` gives a standard GRU (the IAAN baseline).

IAAN's current-utterance branch: a BiGRU of AR-GRU cells over the utterance (masked time
loop), IAAN's additive attention over its frames (attention size 16) and the IAAN MLP (FC 64,
dropout, LayerNorm, ReLU, output layer).

Dialogue context (``context: true``, IAAN's interaction-aware model): the same speaker's
previous turn and the interlocutor's previous turn (inputs ``feats_prev_self.scp`` and
``feats_prev_other.scp``, :mod:`sertk.data.dialog`, normalised with the model's CMVN) are
encoded by two more AR-GRU layers (one each, as IAAN's two GRUs; same size and direction as
the current-utterance one) into their final states ``p`` and ``r``; the attention becomes
``e_t = u^T tanh(W_c h_t + W_p p + W_r r + b)`` and the MLP reads ``[utterance vector; p; r]``.
A missing turn (the first turns of a dialogue) is an empty sequence: its state is zeros.
``context: false`` (default) drops those terms: ``e_t = u^T tanh(W_c h_t + b)``
(:class:`~sertk.models.layers.AdditiveAttentionPooling`), the MLP reads the utterance vector.

Input: openSMILE emobase2010 LLDs in the paper; the stand-in is ``conf/feats/emobase_lld.yaml``
(emobase LLDs, 26 dims; see ``sertk/features/opensmile_fe.py``).

Not specified by the paper, taken from the IAAN reference implementation
(30stomercury/Interaction-Aware-Attention-Network) and kept in ``conf/model/ar_gru.yaml``:
128 GRU units per direction, attention size 16, FC 64 with LayerNorm, dropout 0.1 on the GRU
input/output and in the MLP, label smoothing 0.1, Adam 1e-4, batch 16. Chosen here: per-cell
(not per-unit) AReLU parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sertk.data.dialog import PREV_OTHER, PREV_SELF
from sertk.errors import SertkError
from sertk.models.layers import AdditiveAttentionPooling, lengths_to_mask
from sertk.models.layers.recurrent import MaskedRNN
from sertk.models.registry import MODELS


class AReLU(nn.Module):
    """Attention-based ReLU (Chen et al., NeurIPS 2020): ``clamp(alpha, 0.01, 0.99) * x`` for
    ``x < 0``, ``(1 + sigmoid(beta)) * x`` for ``x >= 0``; learnable scalars alpha, beta."""

    def __init__(self, alpha: float = 0.01, beta: float = 1.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.clamp(0.01, 0.99)
        return F.relu(x) * (1.0 + torch.sigmoid(self.beta)) - F.relu(-x) * alpha


class ARGRUCell(nn.Module):
    """GRU cell (``nn.GRUCell`` equations and gate order r, z, n) whose candidate activation is
    AReLU (``activation="arelu"``) or tanh. Follows the cell protocol of
    :mod:`sertk.models.layers.recurrent`; state ``(h,)``."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "arelu",
                 alpha: float = 0.01, beta: float = 1.0):
        super().__init__()
        if activation not in ("arelu", "tanh"):
            raise SertkError(f"ar_gru: activation must be arelu or tanh, got {activation!r}")
        self.hidden_size = hidden_size
        self.x_proj = nn.Linear(input_size, 3 * hidden_size)
        self.h_proj = nn.Linear(hidden_size, 3 * hidden_size)
        self.act: nn.Module = AReLU(alpha, beta) if activation == "arelu" else nn.Tanh()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.x_proj(x)

    def initial_state(self, batch: int, ref: torch.Tensor) -> tuple[torch.Tensor]:
        return (ref.new_zeros(batch, self.hidden_size),)

    def forward(self, xp: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        h = state[0]
        x_r, x_z, x_n = xp.chunk(3, dim=-1)
        h_r, h_z, h_n = self.h_proj(h).chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = self.act(x_n + r * h_n)
        return ((1.0 - z) * n + z * h,)


@MODELS.register("ar_gru", summary="BiGRU with AReLU inside the cells + attention (IAAN)",
                 paper="Rajamani et al., A novel attention-based gated recurrent unit and its "
                       "efficacy in speech emotion recognition, ICASSP 2021")
class ARGRU(nn.Module):
    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """With ``context: true``, the previous turns' feature tables (``context`` kind)."""
        return {PREV_SELF: "context", PREV_OTHER: "context"} \
            if (conf or {}).get("context") else {}

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 128,
                 bidirectional: bool = True, activation: str = "arelu", alpha: float = 0.01,
                 beta: float = 1.0, att_dim: int = 16, fc_dim: int = 64, dropout: float = 0.1,
                 context: bool = False, input_sizes: dict[str, int] | None = None):
        """``input_sizes``: the context tables' dimensions (the features', by construction)."""
        super().__init__()

        def rnn() -> MaskedRNN:
            return MaskedRNN(lambda: ARGRUCell(input_dim, hidden, activation, alpha, beta),
                             bidirectional=bidirectional)

        self.rnn = rnn()
        self.in_dropout = nn.Dropout(dropout)
        self.out_dropout = nn.Dropout(dropout)
        self.attention = AdditiveAttentionPooling(self.rnn.out_dim, att_dim)
        self.context = bool(context)
        dim = self.rnn.out_dim
        if self.context:
            self.context_rnn = nn.ModuleDict({PREV_SELF.split(".")[0]: rnn(),
                                              PREV_OTHER.split(".")[0]: rnn()})
            self.context_query = nn.Linear(2 * dim, att_dim, bias=False)  # W_p p + W_r r
            dim *= 3
        self.head = nn.Sequential(nn.Linear(dim, fc_dim), nn.Dropout(dropout),
                                  nn.LayerNorm(fc_dim), nn.ReLU(), nn.Linear(fc_dim, num_classes))

    def _contexts(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
                  ) -> torch.Tensor:
        """``[p; r]``: the final states of the previous turns' encoders (zeros: no turn)."""
        states = []
        for table in (PREV_SELF, PREV_OTHER):
            if not inputs or table not in inputs:
                raise SertkError(f"model ar_gru with context needs the {table} input (the "
                                 "dialogue context of a dump with utt2dialog)")
            x, n = inputs[table]
            mask = lengths_to_mask(n.to(x.device), x.shape[1])
            _, state = self.context_rnn[table.split(".")[0]](self.in_dropout(x), mask)
            states.append(state)
        return torch.cat(states, dim=-1)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        out, _ = self.rnn(self.in_dropout(feats), mask)
        if not self.context:
            return self.head(self.attention(self.out_dropout(out), mask))
        ctx = self._contexts(inputs)
        pooled = self.attention(self.out_dropout(out), mask, self.context_query(ctx))
        return self.head(torch.cat([pooled, ctx], dim=-1))
