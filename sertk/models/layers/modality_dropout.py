"""Whole-modality dropout for the multimodal models (ModDrop: Neverova, Wolf, Taylor, Nebout,
"ModDrop: adaptive multi-modal gesture recognition", IEEE TPAMI 2016).

Not in the emotion papers of the zoo: a regulariser chosen here so that a fused model cannot
rely on whichever modality fits its training set first (on a small corpus the audio stream
alone reaches training accuracy 1 within a few epochs, and the text stream then gets
little gradient). Each model exposes it as ``modality_dropout`` (0: off, the papers' models).
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.errors import SertkError


class ModalityDropout(nn.Module):
    """In training, with probability ``p`` a sample loses one of its modalities (drawn
    uniformly): that modality's encoded tensor is replaced by zeros for that sample. At most
    one modality per sample is dropped, so at least one always remains. The identity in
    evaluation mode, with ``p = 0`` or with a single modality."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise SertkError(f"modality_dropout must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{modality: [B, ...]}`` -> the same, some samples' modalities zeroed."""
        if not self.training or self.p == 0.0 or len(encoded) < 2:
            return encoded
        first = next(iter(encoded.values()))
        b, device = first.shape[0], first.device
        drop = torch.rand(b, device=device) < self.p
        which = torch.randint(len(encoded), (b,), device=device)
        out = {}
        for i, (name, x) in enumerate(encoded.items()):
            keep = ~(drop & (which == i))
            out[name] = x * keep.view(b, *([1] * (x.dim() - 1))).to(x.dtype)
        return out
