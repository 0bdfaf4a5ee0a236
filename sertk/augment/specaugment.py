"""SpecAugment (Park et al., Interspeech 2019): time warping, time and frequency masks.

Masks are drawn inside each utterance's true length; masked values are set to ``value``
(0 = the mean after CMVN). Time warping moves a random centre frame by up to ``time_warp``
frames and stretches the two sides linearly to fit (the interpolation form used by ESPnet),
within the true length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sertk.augment.registry import AUGMENTS, Batch


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(0, max(high, 0) + 1, (), generator=generator))


def time_warp(x: torch.Tensor, w: int, generator: torch.Generator) -> torch.Tensor:
    """Warp ``x [T, D]``: frame ``c`` moves to ``c + d``, |d| <= w, ends fixed."""
    t = x.shape[0]
    if w <= 0 or t <= 2 * w + 2:
        return x
    c = w + 1 + _randint(t - 2 * w - 3, generator)
    d = _randint(2 * w, generator) - w
    if d == 0:
        return x
    left = F.interpolate(x[:c].T[None], size=c + d, mode="linear", align_corners=False)
    right = F.interpolate(x[c:].T[None], size=t - c - d, mode="linear", align_corners=False)
    return torch.cat([left[0].T, right[0].T], dim=0)


@AUGMENTS.register("specaugment", summary="SpecAugment time warp, time and frequency masks",
                   paper="Park et al., SpecAugment, Interspeech 2019")
class SpecAugment:
    level = "batch"

    def __init__(self, num_time_masks: int = 2, time_width: int = 40, num_freq_masks: int = 2,
                 freq_width: int = 30, max_time_ratio: float = 0.2, time_warp: int = 0,
                 value: float = 0.0):
        self.num_time_masks = num_time_masks
        self.time_width = time_width
        self.num_freq_masks = num_freq_masks
        self.freq_width = freq_width
        self.max_time_ratio = max_time_ratio
        self.time_warp = time_warp
        self.value = value

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        feats = batch.feats.clone()
        dim = feats.shape[2]
        for b in range(feats.shape[0]):
            n = int(batch.lengths[b])
            if self.time_warp:
                feats[b, :n] = time_warp(feats[b, :n], self.time_warp, generator)
            max_w = min(self.time_width, int(self.max_time_ratio * n))
            for _ in range(self.num_time_masks):
                w = _randint(max_w, generator)
                t0 = _randint(n - w, generator)
                feats[b, t0:t0 + w] = self.value
            for _ in range(self.num_freq_masks):
                w = _randint(min(self.freq_width, dim), generator)
                f0 = _randint(dim - w, generator)
                feats[b, :n, f0:f0 + w] = self.value
        return batch.with_feats(feats)
