"""Mask-aware pooling over time: means, standard deviations and attention pooling."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``[B, T, D]`` over real frames -> ``[B, D]``."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Global max pooling of ``[B, T, D]`` over the real steps -> ``[B, D]``."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def masked_std(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    mean = masked_mean(x, mask).unsqueeze(1)
    var = (((x - mean) ** 2) * m).sum(1) / m.sum(1).clamp_min(1.0)
    return torch.sqrt(var.clamp_min(eps))


def masked_mean_2d(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Global average pooling of ``[B, C, T, F]`` over real frames and all bins -> ``[B, C]``."""
    m = mask.view(mask.shape[0], 1, mask.shape[1], 1).to(x.dtype)
    return (x * m).sum((2, 3)) / (m.sum((2, 3)) * x.shape[3]).clamp_min(1.0)


class StructuredSelfAttention(nn.Module):
    """Structured self-attentive pooling (Lin et al., ICLR 2017), as used by Ando et al. 2021.

    ``A = softmax_t(W2 tanh(W1 H^T))`` with ``heads`` rows; the output is ``A H`` flattened to
    ``[B, heads * D]``. Padded frames get zero weight. ``penalty()`` returns Lin's
    ``||A A^T - I||_F^2`` of the last call (batch mean) for an optional regulariser.
    """

    def __init__(self, in_dim: int, att_dim: int = 64, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(in_dim, att_dim, bias=False)
        self.w2 = nn.Linear(att_dim, heads, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.heads = heads
        self.out_dim = heads * in_dim
        self._last: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.w2(torch.tanh(self.w1(h)))  # [B, T, heads]
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        att = torch.softmax(scores, dim=1).transpose(1, 2)  # [B, heads, T]
        self._last = att
        return self.dropout(torch.bmm(att, h).flatten(1))  # [B, heads * D]

    def penalty(self) -> torch.Tensor:
        if self._last is None:
            raise RuntimeError("penalty() before forward()")
        a = self._last
        eye = torch.eye(a.shape[1], device=a.device, dtype=a.dtype)
        return ((a @ a.transpose(1, 2) - eye) ** 2).sum((1, 2)).mean()


class StatsPooling(nn.Module):
    """Mean and standard deviation over real frames (Snyder et al. 2018) -> ``[B, 2D]``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([masked_mean(x, mask), masked_std(x, mask)], dim=-1)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al., Interspeech 2018): frame weights from a
    small MLP (``hidden`` units; 0: one linear layer), weighted mean and standard deviation
    -> ``[B, 2D]``."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.att = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1)) \
            if hidden > 0 else nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.att(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(w, dim=1).unsqueeze(-1)
        mean = (w * x).sum(1)
        var = (w * x * x).sum(1) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp_min(1e-5))], dim=-1)


class AdditiveAttentionPooling(nn.Module):
    """Bahdanau-style additive attention pooling: ``e_t = v^T tanh(W x_t + b [+ q])``, softmax
    over real frames, weighted sum -> ``[B, D]`` (used with ``att_dim`` 16 by HNSD); ``q``
    ``[B, att_dim]`` is an optional per-utterance term (IAAN's context, ``ar_gru``)."""

    def __init__(self, dim: int, att_dim: int = 16):
        super().__init__()
        self.proj = nn.Linear(dim, att_dim)
        self.v = nn.Linear(att_dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                query: torch.Tensor | None = None) -> torch.Tensor:
        h = self.proj(x) if query is None else self.proj(x) + query.unsqueeze(1)
        e = self.v(torch.tanh(h)).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(e, dim=1).unsqueeze(-1) * x).sum(1)


class GaussianAttentionPooling(nn.Module):
    """Multi-head attention pooling of Pappagari et al. 2021 (CopyPaste ResNet):
    ``w_{h,t} = softmax_t(-s_h ||x_t - mu_h||)`` with learnable ``s_h`` and ``mu_h``; each head
    gives the weighted mean of the input; heads concatenated -> ``[B, heads * D]``."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(heads, dim) * 0.1)
        self.log_s = nn.Parameter(torch.zeros(heads))
        self.heads = heads
        self.out_dim = heads * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(x, self.mu.unsqueeze(0).expand(x.shape[0], -1, -1))  # [B, T, H]
        score = (-self.log_s.exp() * dist).masked_fill(~mask.unsqueeze(-1), float("-inf"))
        w = torch.softmax(score, dim=1)  # [B, T, H]
        return torch.einsum("bth,btd->bhd", w, x).flatten(1)
