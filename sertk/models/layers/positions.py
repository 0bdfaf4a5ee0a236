"""Position encodings shared by the attention models."""

from __future__ import annotations

import math

import torch


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Transformer sinusoidal position embeddings ``[length, dim]`` (sin on even, cos on odd
    dimensions)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe
