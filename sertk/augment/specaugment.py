"""SpecAugment time and frequency masking (Park et al., Interspeech 2019).

Masks are drawn inside each utterance's true length; masked values are set to ``value``
(0 = the mean after CMVN). Time warping is not implemented here.
"""

from __future__ import annotations

import torch

from sertk.augment.registry import AUGMENTS


@AUGMENTS.register("specaugment", summary="SpecAugment time and frequency masks",
                   paper="Park et al., SpecAugment, Interspeech 2019")
class SpecAugment:
    def __init__(self, num_time_masks: int = 2, time_width: int = 40, num_freq_masks: int = 2,
                 freq_width: int = 30, max_time_ratio: float = 0.2, value: float = 0.0):
        self.num_time_masks = num_time_masks
        self.time_width = time_width
        self.num_freq_masks = num_freq_masks
        self.freq_width = freq_width
        self.max_time_ratio = max_time_ratio
        self.value = value

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        feats = feats.clone()
        batch, _, dim = feats.shape

        def draw(high: int) -> int:
            return int(torch.randint(0, max(high, 0) + 1, (), generator=generator))

        for b in range(batch):
            n = int(lengths[b])
            max_w = min(self.time_width, int(self.max_time_ratio * n))
            for _ in range(self.num_time_masks):
                w = draw(max_w)
                t0 = draw(n - w)
                feats[b, t0:t0 + w] = self.value
            for _ in range(self.num_freq_masks):
                w = draw(min(self.freq_width, dim))
                f0 = draw(dim - w)
                feats[b, :n, f0:f0 + w] = self.value
        return feats
