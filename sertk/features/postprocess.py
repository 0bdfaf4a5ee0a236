"""Feature post-processing shared by every front end, set in the feature config:

    deltas: 2            # append first (1) or first and second (2) order differences
    delta_window: 2      # M of the regression formula below
    cmvn: utterance      # none | utterance | sliding  (per-utterance normalisation)
    norm_vars: false     # also divide by the standard deviation
    cmvn_window: 300     # frames, for sliding (Kaldi apply-cmvn-sliding, centred)
    fixed_frames: 120    # zero-pad or crop to exactly this many frames (Chopra et al.)

Deltas follow the regression formula of Cao et al. (papers.md section 2) and Kaldi/HTK,
``d_t = sum_{n=1..M} n (x_{t+n} - x_{t-n}) / (2 sum_{n=1..M} n^2)``, with the edge frames
repeated. Global and per-speaker CMVN need corpus statistics and live in :mod:`cmvn`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sertk.errors import SertkError

POST_KEYS = ("deltas", "delta_window", "cmvn", "norm_vars", "cmvn_window", "fixed_frames")


def deltas(x: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas of ``x [T, D]`` along time with edge replication."""
    if window < 1:
        raise ValueError("delta window must be >= 1")
    padded = F.pad(x.T[None], (window, window), mode="replicate")[0].T  # [T + 2M, D]
    t = x.shape[0]
    num = sum(n * (padded[window + n:window + n + t] - padded[window - n:window - n + t])
              for n in range(1, window + 1))
    return num / (2 * sum(n * n for n in range(1, window + 1)))


def utterance_cmvn(x: torch.Tensor, norm_vars: bool = False) -> torch.Tensor:
    y = x - x.mean(0, keepdim=True)
    return y / x.std(0, unbiased=False, keepdim=True).clamp_min(1e-5) if norm_vars else y


def sliding_cmvn(x: torch.Tensor, window: int = 300, norm_vars: bool = False) -> torch.Tensor:
    """Kaldi ``apply-cmvn-sliding --center=true``: statistics over a ``window``-frame window
    centred on each frame, shifted to stay inside the utterance when near its ends (a shorter
    utterance uses all of its frames)."""
    t = x.shape[0]
    win = min(window, t)
    starts = (torch.arange(t) - win // 2).clamp(0, t - win)
    c1 = F.pad(x.double().cumsum(0), (0, 0, 1, 0))
    s1 = (c1[starts + win] - c1[starts]) / win
    y = x.double() - s1
    if norm_vars:
        c2 = F.pad((x.double() ** 2).cumsum(0), (0, 0, 1, 0))
        var = (c2[starts + win] - c2[starts]) / win - s1 ** 2
        y = y / var.clamp_min(1e-10).sqrt()
    return y.to(x.dtype)


def fix_length(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad at the end or keep the first ``frames`` frames."""
    if x.shape[0] >= frames:
        return x[:frames]
    return F.pad(x, (0, 0, 0, frames - x.shape[0]))


class PostProcessed:
    """A front end followed by the configured post-processing; ``dim`` accounts for deltas."""

    def __init__(self, base, deltas: int = 0, delta_window: int = 2, cmvn: str = "none",
                 norm_vars: bool = False, cmvn_window: int = 300,
                 fixed_frames: int | None = None):
        if cmvn not in ("none", "utterance", "sliding"):
            raise SertkError(f"feature cmvn must be none, utterance or sliding (global and "
                             f"per-speaker statistics are separate steps), got {cmvn!r}")
        if deltas not in (0, 1, 2):
            raise SertkError(f"deltas must be 0, 1 or 2, got {deltas}")
        self.base = base
        self.order, self.window = deltas, delta_window
        self.cmvn, self.norm_vars, self.cmvn_window = cmvn, norm_vars, cmvn_window
        self.fixed_frames = fixed_frames
        self.dim = base.dim * (1 + deltas)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.base(wav)
        if x.shape[0] == 0:
            return x.new_zeros(0, self.dim)
        if self.cmvn == "utterance":
            x = utterance_cmvn(x, self.norm_vars)
        elif self.cmvn == "sliding":
            x = sliding_cmvn(x, self.cmvn_window, self.norm_vars)
        parts = [x]
        for _ in range(self.order):
            parts.append(deltas(parts[-1], self.window))
        x = torch.cat(parts, dim=1)
        return fix_length(x, self.fixed_frames) if self.fixed_frames else x
