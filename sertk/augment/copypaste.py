"""CopyPaste (Pappagari et al., ICASSP 2021): concatenations labelled by their emotion.

* ``n_cp``: an utterance of emotion E joined with a neutral utterance is labelled E;
* ``se_cp``: two utterances of emotion E joined are labelled E;
* ``n_se_cp``: per batch, N-CP with probability ``p/2`` and SE-CP with ``p/2``.

A batch is augmented with probability ``p`` (paper: 0.8; 0.4 + 0.4 for N+SE-CP): every
utterance in it gets a partner drawn from the whole training set by the rule above, a random
``chunk_frames`` chunk is taken from each (paper: 4 s) and the two are joined in random order.
sertk joins feature frames (papers.md allows waveforms or frames): the front end is frame-
local, so this equals joining the audio except for the frames at the seam.
"""

from __future__ import annotations

import numpy as np
import torch

from sertk.augment.registry import AUGMENTS
from sertk.errors import SertkError

MODES = ("n_cp", "se_cp", "n_se_cp")


@AUGMENTS.register("copypaste", summary="CopyPaste: N-CP / SE-CP / N+SE-CP concatenations",
                   paper="Pappagari et al., CopyPaste, ICASSP 2021")
class CopyPaste:
    level = "items"

    def __init__(self, mode: str = "n_se_cp", p: float = 0.8, chunk_frames: int = 400,
                 neutral: str = "neutral"):
        if mode not in MODES:
            raise SertkError(f"copypaste mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.prob, self.chunk_frames, self.neutral = mode, p, chunk_frames, neutral

    def choose(self, rng: np.random.Generator) -> str | None:
        """The scheme applied to this batch, or None."""
        u = rng.random()
        if u >= self.prob:
            return None
        if self.mode == "n_se_cp":
            return "n_cp" if u < self.prob / 2 else "se_cp"
        return self.mode

    def __call__(self, items: list, dataset, rng: np.random.Generator) -> list:
        scheme = self.choose(rng)
        if scheme is None:
            return items
        by_label = dataset.indices_by_label()
        if scheme == "n_cp":
            if self.neutral not in (dataset.labels or []):
                raise SertkError(f"copypaste n_cp: no '{self.neutral}' label in the training set")
            neutral_idx = by_label.get(dataset.labels.index(self.neutral), [])
            if not neutral_idx:
                raise SertkError("copypaste n_cp: the training set has no neutral utterance")
        out = []
        for key, feats, label in items:
            pool = neutral_idx if scheme == "n_cp" else by_label[label]
            partner = dataset.load(int(pool[rng.integers(len(pool))]))
            a = dataset.random_chunk(feats.numpy(), self.chunk_frames)
            b = dataset.random_chunk(partner, self.chunk_frames)
            joined = np.concatenate([a, b] if rng.random() < 0.5 else [b, a], axis=0)
            out.append((key, torch.from_numpy(np.ascontiguousarray(joined, dtype=np.float32)),
                        label))
        return out
