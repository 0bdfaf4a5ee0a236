"""Stacked unidirectional LSTM layers of different widths over padded batches.

``nn.LSTM`` stacks layers of one width only; :class:`StackedLSTM` chains one packed ``nn.LSTM``
per width (e.g. 256 -> 128 -> 64, Atmaja & Akagi 2020) with dropout after each layer. Each
layer runs on a packed sequence, so no output depends on the padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch-first ``rnn`` over ``x [B, T, D]``: frame outputs ``[B, T, H]`` (zero on
    padding) and the last layer's final ``h`` after each utterance's last real frame
    (``[B, H]``; both directions concatenated when bidirectional)."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                               enforce_sorted=False)
    out, h_n = rnn(packed)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h, c)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    dirs = 2 if rnn.bidirectional else 1
    return out, torch.cat(list(h_n[-dirs:]), dim=-1)


class StackedLSTM(nn.Module):
    """LSTM layers of widths ``hidden`` with ``dropout`` after each (also the last).

    ``forward(x [B, T, D], lengths [B])`` returns the last layer's frame outputs
    ``[B, T, hidden[-1]]`` (zero on padding, after dropout) and its final state after each
    utterance's last real frame ``[B, hidden[-1]]`` (after dropout).
    """

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        if not hidden:
            raise ValueError("StackedLSTM needs at least one layer width")
        dims = [input_dim, *hidden]
        self.layers = nn.ModuleList(nn.LSTM(i, o, batch_first=True)
                                    for i, o in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        last = x
        for lstm in self.layers:
            x, last = run_packed(lstm, x, lengths)
            x = self.dropout(x)
        return x, self.dropout(last)
