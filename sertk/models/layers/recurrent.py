"""Masked time loops for custom recurrent cells (those ``nn.LSTM``/``nn.GRU`` cannot express).

A cell is an ``nn.Module`` with

* ``hidden_size``;
* ``project(x [B, T, D]) -> [B, T, G]``: the input projections of all frames, computed in one
  matrix product before the loop;
* ``initial_state(batch, ref) -> tuple[Tensor, ...]``: the zero state (``ref`` gives the
  device and dtype); the first element is the output ``h``;
* ``forward(xp_t [B, G], state) -> state``: one time step.

:func:`masked_scan` runs a cell over ``[B, T, D]``: at a padded step the state is kept, so the
final state is the state after each utterance's last real frame and no output depends on the
padding. :class:`MaskedRNN` adds a backward direction by reversing each utterance within its
length (:func:`reverse_padded`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` frames of each ``x[b]`` (``[B, T, D]``); padded frames
    stay in place. The function is its own inverse."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    lens = lengths.to(x.device)[:, None]
    idx = torch.where(t < lens, lens - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


def masked_scan(cell: nn.Module, x: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run ``cell`` over ``x [B, T, D]`` with ``mask [B, T]`` (True on real frames).

    Returns the outputs ``[B, T, H]`` (zero on padded frames) and the final state (the state
    after each utterance's last real frame; the initial state for an empty sequence).
    """
    xp = cell.project(x)
    state = cell.initial_state(x.shape[0], xp)
    outs = []
    for xt, mt in zip(xp.unbind(1), mask.unsqueeze(-1).unbind(1)):
        new = cell(xt, state)
        state = tuple(torch.where(mt, n, o) for n, o in zip(new, state))
        outs.append(new[0])
    if not outs:  # no frames at all (e.g. no previous turn): the zero state
        return xp.new_zeros(x.shape[0], 0, state[0].shape[-1]), state
    out = torch.stack(outs, dim=1).masked_fill(~mask.unsqueeze(-1), 0.0)
    return out, state


class MaskedRNN(nn.Module):
    """One recurrent layer of custom cells, uni- or bidirectional, padding-independent.

    ``make_cell()`` builds one cell per direction. ``forward(x, mask)`` returns the outputs
    ``[B, T, dirs * H]`` (directions concatenated, padding zeroed) and the final ``h`` of each
    direction concatenated, ``[B, dirs * H]`` (for the backward direction: after frame 0).
    """

    def __init__(self, make_cell: Callable[[], nn.Module], bidirectional: bool = False):
        super().__init__()
        self.cells = nn.ModuleList(make_cell() for _ in range(2 if bidirectional else 1))
        self.hidden_size = int(self.cells[0].hidden_size)
        self.out_dim = self.hidden_size * len(self.cells)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = masked_scan(self.cells[0], x, mask)
        if len(self.cells) == 1:
            return out, state[0]
        lengths = mask.sum(1)
        out_b, state_b = masked_scan(self.cells[1], reverse_padded(x, lengths), mask)
        out_b = reverse_padded(out_b, lengths)
        return torch.cat([out, out_b], dim=-1), torch.cat([state[0], state_b[0]], dim=-1)
