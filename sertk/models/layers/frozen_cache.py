"""A per-utterance cache of a frozen front end's outputs.

A frozen pre-trained encoder (CPC, an SSL model) gives the same output for the same input
every epoch, so recomputing it at every step wastes most of a training run on the CPU.
:class:`FrozenOutputCache` keys each utterance by a hash of its unpadded input and keeps the
encoder's unpadded output on the CPU; a batch is then built from the cache and only the
utterances not seen before go through the encoder (as one smaller batch). Outputs are the
same as without the cache as long as the encoder is deterministic, has no state that
changes (frozen, no dropout or batch statistics: call it in evaluation mode) and its outputs
on real frames do not depend on padding (the zoo's masking convention).

The cache holds at most ``max_frames`` output frames (``max_frames * dim * 4`` bytes); once
full, new utterances are computed but not stored. ``max_frames: 0`` turns it off (packed
models for inference: memory must not grow with the number of files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

Encoder = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _keys(x: torch.Tensor, lengths: torch.Tensor) -> list[bytes]:
    """A hash of each utterance's unpadded input (one copy of the batch to the CPU)."""
    host = x.detach().to("cpu", torch.float32)
    keys = []
    for i, n in enumerate(lengths.tolist()):
        data = host[i, :int(n)].contiguous().numpy().tobytes()
        digest = hashlib.blake2b(data, digest_size=16).digest()
        keys.append(digest + len(data).to_bytes(8, "little"))
    return keys


class FrozenOutputCache:
    """``cache(encoder, x [B, S, ...], lengths [B]) -> (y [B, T, D], out_lengths [B])`` where
    ``encoder`` maps a padded batch and its lengths to padded outputs and their lengths."""

    def __init__(self, max_frames: int = 0):
        self.max_frames = int(max_frames)
        self.frames = 0
        self.store: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.store)

    def __call__(self, encoder: Encoder, x: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.max_frames <= 0:
            return encoder(x, lengths)
        keys = _keys(x, lengths)
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        fresh: dict[int, torch.Tensor] = {}
        if todo:
            sub = torch.tensor(todo, device=x.device)
            sub_len = lengths[sub]
            y, y_len = encoder(x[sub, :int(sub_len.max())], sub_len)
            for j, i in enumerate(todo):
                fresh[i] = y[j, :int(y_len[j])].detach()
                if keys[i] not in self.store and self.frames + fresh[i].shape[0] <= self.max_frames:
                    self.store[keys[i]] = fresh[i].to("cpu")
                    self.frames += fresh[i].shape[0]
        rows = [fresh[i] if i in fresh else self.store[k].to(x.device)
                for i, k in enumerate(keys)]
        out_len = torch.tensor([r.shape[0] for r in rows], device=lengths.device)
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), out_len
