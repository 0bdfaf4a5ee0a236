"""Vocal tract length perturbation (Jaitly & Hinton 2013), as used by Xu et al. 2021.

A warp factor ``alpha ~ U(low, high)`` per utterance rescales the frequency axis piecewise
linearly: ``f' = alpha f`` up to the boundary ``f_b = f_hi * min(alpha, 1) / alpha``, then the
line through ``(f_b, alpha f_b)`` and ``(f_hi, f_hi)``, with ``f_hi = boundary * F`` (bins).
Each output bin takes the linearly interpolated input value at the inverse-warped position.
This works on any frequency-ordered feature (linear or mel spectrogram, filterbank); on
cepstra it is meaningless. For Xu et al.'s 7 extra copies per utterance, train with
``train.repeat: 8`` and ``p: 0.875`` (on average 7 warped copies + 1 clean).
"""

from __future__ import annotations

import torch

from sertk.augment.registry import AUGMENTS, Batch


def warp_positions(num_bins: int, alpha: float, boundary: float = 0.9) -> torch.Tensor:
    """Input position (fractional bin) that each output bin reads from."""
    f_hi = boundary * (num_bins - 1)
    f_b = f_hi * min(alpha, 1.0) / alpha
    out = torch.arange(num_bins, dtype=torch.float64)

    # forward warp g(f); invert it per output bin (g is monotonic and piecewise linear)
    def inverse(y: torch.Tensor) -> torch.Tensor:
        below = y <= alpha * f_b
        x_low = y / alpha
        top = num_bins - 1
        # segment 2: from (f_b, alpha f_b) to (top, top)
        slope = (top - alpha * f_b) / max(top - f_b, 1e-9)
        x_high = f_b + (y - alpha * f_b) / slope
        return torch.where(below, x_low, x_high)

    return inverse(out).clamp(0, num_bins - 1)


def vtlp(x: torch.Tensor, alpha: float, boundary: float = 0.9) -> torch.Tensor:
    """Warp ``x [T, F]`` along F by ``alpha``."""
    pos = warp_positions(x.shape[1], alpha, boundary).to(x.device)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=x.shape[1] - 1)
    frac = (pos - lo).to(x.dtype)
    return x[:, lo] * (1 - frac) + x[:, hi] * frac


@AUGMENTS.register("vtlp", summary="vocal tract length perturbation (frequency-axis warp)",
                   paper="Jaitly & Hinton 2013; Xu et al., ICASSP 2021")
class VTLP:
    level = "batch"

    def __init__(self, low: float = 0.9, high: float = 1.1, boundary: float = 0.9,
                 p_utt: float = 1.0):
        if not 0 < low <= high:
            raise ValueError("need 0 < low <= high")
        self.low, self.high, self.boundary, self.p_utt = low, high, boundary, p_utt

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        feats = batch.feats.clone()
        for b in range(feats.shape[0]):
            if self.p_utt < 1.0 and torch.rand((), generator=generator).item() >= self.p_utt:
                continue
            alpha = self.low + (self.high - self.low) * torch.rand((), generator=generator).item()
            n = int(batch.lengths[b])
            feats[b, :n] = vtlp(feats[b, :n], alpha, self.boundary)
        return batch.with_feats(feats)
