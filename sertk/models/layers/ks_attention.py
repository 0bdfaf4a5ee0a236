"""Key-sparse multi-head attention (Chen et al., Key-Sparse Transformer for Multimodal Speech
Emotion Recognition, ICASSP 2022; papers.md section 24).

Vanilla attention ``W = softmax(Q K^T / sqrt(d))``. The importance of key (value) ``z`` is its
column sum ``s_z = sum_i W_iz``; the top-k keys by ``s_z`` keep their weights, the other
columns of ``W`` are zeroed (no re-normalisation), then ``W V``. ``k`` is a ratio of the keys
(the paper's default ``k = 0.5``) or, with ``topk``, a number of keys.

Choices from papers.md's implementation notes (the paper is silent): ``s_z`` per head and
sample (``scope="per_head"``; ``"shared"`` sums the heads and masks all heads alike); padded
keys are never selected (``s_z = -inf``) and ``k = ceil(ratio * valid keys)``; ``topk`` keeps
``min(topk, valid keys)``. Chosen here: only real queries count in ``s_z`` (in
self-attention, i.e. ``query is key``, the key padding mask; in cross-attention an optional
``query_padding_mask``), so the selection does not depend on padding; attention dropout is
applied after the masking. With ``k >=`` the number of keys the output is full attention.

:class:`KeySparseAttention` is a drop-in :class:`torch.nn.MultiheadAttention`: same
parameters (a full-attention checkpoint loads into it), same call, e.g.
``encoder_layer.self_attn = KeySparseAttention(...)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError

SCOPES = ("per_head", "shared")


def _python_path(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook that does nothing: ``nn.TransformerEncoderLayer``'s inference fast
    path (which computes full attention from ``in_proj_weight`` without calling
    ``self_attn``) is skipped for layers with hooks, so this module's forward always runs."""
    return None


def real_positions(mask: torch.Tensor | None, batch: int, length: int,
                   device: torch.device) -> torch.Tensor:
    """``[B, L]`` True on real positions from a key padding mask: boolean (True = padding),
    additive float (``-inf`` = padding) or None (no padding)."""
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    return ~mask if mask.dtype == torch.bool else ~torch.isneginf(mask)


class KeySparseAttention(nn.MultiheadAttention):
    """Multi-head attention keeping the top-k keys by attention column sum (see the module
    docstring). ``ratio`` in (0, 1] or ``topk >= 1`` (overrides ``ratio``); ``scope``
    ``per_head`` or ``shared``. Batch-first by default."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = True,
                 ratio: float = 0.5, topk: int | None = None, scope: str = "per_head"):
        if not 0.0 < float(ratio) <= 1.0:
            raise SertkError(f"key-sparse ratio must be in (0, 1], got {ratio}")
        if topk is not None and int(topk) < 1:
            raise SertkError(f"key-sparse topk must be at least 1, got {topk}")
        if scope not in SCOPES:
            raise SertkError(f"key-sparse scope must be one of {', '.join(SCOPES)}, "
                             f"got {scope!r}")
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, kdim=kdim,
                         vdim=vdim, batch_first=batch_first)
        self.ratio, self.scope = float(ratio), scope
        self.topk = None if topk is None else int(topk)
        self.register_forward_pre_hook(_python_path)

    def kept_keys(self, valid: torch.Tensor) -> list[int]:
        """Number of keys kept per sample for ``valid`` real keys ``[B]``."""
        if self.topk is not None:
            return [min(self.topk, n) for n in valid.tolist()]
        return [min(n, max(1, math.ceil(round(self.ratio * n, 9)))) for n in valid.tolist()]

    def key_mask(self, w: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor
                 ) -> torch.Tensor:
        """0/1 column mask ``[B, H or 1, 1, S]`` of the top-k keys of the weights ``w``
        ``[B, H, T, S]``, column sums over the real ``queries`` ``[B, T]``, among the real
        ``keys`` ``[B, S]``."""
        with torch.no_grad():
            s = (w * queries[:, None, :, None].to(w.dtype)).sum(2)  # [B, H, S]
            if self.scope == "shared":
                s = s.sum(1, keepdim=True)
            s = s.masked_fill(~keys[:, None, :], float("-inf"))
            k = torch.tensor(self.kept_keys(keys.sum(1)), device=w.device)
            idx = s.topk(int(k.max()) if k.numel() else 0, dim=-1).indices
            rank_kept = torch.arange(idx.shape[-1], device=w.device) < k[:, None, None]
            keep = torch.zeros_like(s).scatter(-1, idx, rank_kept.expand_as(idx).to(s.dtype))
        return keep.unsqueeze(2)

    def _project(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head projections ``[B, H, L, head_dim]`` with this module's weights."""
        if self._qkv_same_embed_dim:
            weights = self.in_proj_weight.chunk(3)
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        biases = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        b, h = query.shape[0], self.num_heads
        return tuple(F.linear(x, w, bias).view(b, x.shape[1], h, -1).transpose(1, 2)
                     for x, w, bias in zip((query, key, value), weights, biases))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False, query_padding_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As :meth:`nn.MultiheadAttention.forward` (``attn_mask`` ``[T, S]`` or
        ``[B * H, T, S]``, boolean or additive); returns the output and, with
        ``need_weights``, the sparse weights. ``query_padding_mask`` (True = padding) marks
        the queries left out of the column sums; by default none in cross-attention and the
        key padding mask in self-attention (``query is key``)."""
        self_attention = query is key
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        b, t, s = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = self._project(query, key, value)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B, H, T, S]
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros_like(attn_mask, dtype=scores.dtype).masked_fill(
                    attn_mask, float("-inf"))
            scores = scores + (attn_mask if attn_mask.dim() == 2 else
                               attn_mask.view(b, self.num_heads, t, s))
        keys = real_positions(key_padding_mask, b, s, query.device)
        w = torch.softmax(scores.masked_fill(~keys[:, None, None, :], float("-inf")), dim=-1)
        if query_padding_mask is None and self_attention:
            query_padding_mask = key_padding_mask
        queries = real_positions(query_padding_mask, b, t, query.device)
        w = w * self.key_mask(w, queries, keys)
        out = F.dropout(w, self.dropout, self.training) @ v  # [B, H, T, head_dim]
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        weights = (w.mean(1) if average_attn_weights else w) if need_weights else None
        return out, weights
