"""Multi-head attention across two sequences (query from one, keys/values from another), shared by
the fusion models: ``daae`` (Gao et al.), ``cpc``'s recogniser (Li et al.) and ``semantic_fusion``
(Tzirakis et al.)."""

from __future__ import annotations

import math

import torch
from torch import nn


class FusionAttention(nn.Module):
    """Multi-head attention with query, key and value from different sequences, heads
    concatenated (no output projection); ``mask`` marks the real key steps."""

    def __init__(self, q_dim: int, k_dim: int, v_dim: int, heads: int = 4, head_dim: int = 32):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q = nn.Linear(q_dim, heads * head_dim, bias=False)
        self.k = nn.Linear(k_dim, heads * head_dim, bias=False)
        self.v = nn.Linear(v_dim, heads * head_dim, bias=False)
        self.out_dim = heads * head_dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        b, t, _ = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # [B, H, T, d]

        qh, kh, vh = split(self.q(q)), split(self.k(k)), split(self.v(v))
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = torch.softmax(scores, dim=-1) @ vh  # [B, H, T, d]
        return out.transpose(1, 2).reshape(b, t, self.out_dim)
