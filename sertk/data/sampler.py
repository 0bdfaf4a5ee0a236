"""Batch sampling, uniformly shuffled or length-bucketed, DDP-aware.

In training, indices are shuffled (seeded by ``seed + epoch``) and batched in that order
(``bucket_pools: 0``), or cut into pools of ``bucket_pools`` batches, sorted by length within a
pool, batched, and the batches shuffled again, so that utterances of similar length share a
batch and little is padded. Length bucketing saves time on long, varied utterances, but where
duration correlates with the class (acted emotion) a large pool gives nearly the same
length-homogeneous, class-skewed batches every epoch. Without shuffling (evaluation) batches
are always sorted by length. Under DDP each rank takes every
``world_size``-th batch; the batch list is padded by repeating batches from its start so that
every rank runs the same number of steps (the padding is logged, nothing is dropped).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)


class BucketBatchSampler:
    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, bucket_pools: int = 50,
                 max_frames: int | None = None, pad_to_world: bool = True):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.bucket_pools = bucket_pools
        self.pad_to_world = pad_to_world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches_of(self, order: list[int]) -> list[list[int]]:
        batches, cur, cur_max = [], [], 0
        for i in order:
            new_max = max(cur_max, self.lengths[i])
            too_many = len(cur) >= self.batch_size
            too_long = self.max_frames is not None and cur and new_max * (len(cur) + 1) > \
                self.max_frames
            if cur and (too_many or too_long):
                batches.append(cur)
                cur, new_max = [], self.lengths[i]
            cur.append(i)
            cur_max = new_max
        if cur:
            batches.append(cur)
        return batches

    def all_batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            return self._batches_of(sorted(idx, key=lambda i: self.lengths[i]))
        rng = random.Random(self.seed + self.epoch)
        rng.shuffle(idx)
        if self.bucket_pools <= 0:
            return self._batches_of(idx)
        pool = self.batch_size * self.bucket_pools
        batches: list[list[int]] = []
        for start in range(0, len(idx), pool):
            chunk = sorted(idx[start:start + pool], key=lambda i: self.lengths[i])
            batches.extend(self._batches_of(chunk))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.all_batches()
        if self.world_size > 1:
            if self.pad_to_world and len(batches) % self.world_size:
                extra = self.world_size - len(batches) % self.world_size
                if self.epoch == 0 and self.rank == 0:
                    log.info("repeating %d batches so each of %d ranks runs the same steps",
                             extra, self.world_size)
                batches = batches + batches[:extra]
            batches = batches[self.rank::self.world_size]
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.all_batches())
        if self.world_size > 1:
            n = -(-n // self.world_size) if self.pad_to_world else len(
                range(self.rank, n, self.world_size))
        return n
