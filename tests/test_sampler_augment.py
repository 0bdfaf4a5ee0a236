"""Length-bucketed batches (single process and DDP shards) and SpecAugment."""

from __future__ import annotations

import torch

from sertk.augment import Batch, build_augment
from sertk.data.sampler import BucketBatchSampler


def test_bucket_sampler_covers_everything_once():
    lengths = [(i * 37) % 101 + 1 for i in range(103)]
    s = BucketBatchSampler(lengths, batch_size=8, shuffle=True, seed=1, bucket_pools=4)
    batches = list(s)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103))
    assert all(len(b) <= 8 for b in batches)
    # batches are length-homogeneous compared to random batching
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread / len(batches) < 40
    s.set_epoch(1)
    assert list(s) != batches  # reshuffled per epoch, deterministically
    s.set_epoch(0)
    assert list(s) == batches


def test_bucket_sampler_ddp_shards_are_equal_and_complete():
    lengths = list(range(1, 52))
    shards = [list(BucketBatchSampler(lengths, 4, shuffle=True, seed=0, rank=r, world_size=3))
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    covered = {i for s in shards for b in s for i in b}
    assert covered == set(range(51))


def test_max_frames_budget():
    lengths = [100] * 10 + [10] * 10
    s = BucketBatchSampler(lengths, batch_size=50, shuffle=False, max_frames=300)
    for b in s:
        assert max(lengths[i] for i in b) * len(b) <= 300


def test_specaugment_reproducible_within_length():
    batch_aug, items_aug = build_augment([{"name": "specaugment", "num_time_masks": 2,
                                           "time_width": 10, "num_freq_masks": 2,
                                           "freq_width": 5, "time_warp": 3}])
    assert items_aug is None
    x = torch.randn(3, 50, 20) + 5
    lengths = torch.tensor([50, 30, 12])
    batch = Batch(x, lengths, torch.tensor([0, 1, 2]), 4)
    a = batch_aug(batch, torch.Generator().manual_seed(7)).feats
    b = batch_aug(batch, torch.Generator().manual_seed(7)).feats
    c = batch_aug(batch, torch.Generator().manual_seed(8)).feats
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a == 0).any()
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(a[i, n:], x[i, n:])  # padding untouched
