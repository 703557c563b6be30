"""MixedBatchSampler: determinism, exact counts, DDP slicing, resume, proportional shares, validation."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from multipose.data.streams import MixedBatchSampler

SIZES = [10, 3, 57]
COUNTS = [4, 3, 9]  # the 3-sample dataset is exhausted every batch: it cycles once per batch


def take(sampler: MixedBatchSampler, n: int) -> list[list[tuple[int, int, int]]]:
    return list(itertools.islice(iter(sampler), n))


def test_same_seed_same_batches_other_seed_differs():
    a = take(MixedBatchSampler(SIZES, COUNTS, seed=3, num_batches=20), 20)
    b = take(MixedBatchSampler(SIZES, COUNTS, seed=3, num_batches=20), 20)
    c = take(MixedBatchSampler(SIZES, COUNTS, seed=4, num_batches=20), 20)
    assert a == b
    assert a != c


def test_exact_counts_every_batch_and_valid_indices():
    s = MixedBatchSampler(SIZES, COUNTS, seed=0, num_batches=30)
    for batch in s:
        counts = Counter(d for d, _, _ in batch)
        assert [counts[d] for d in range(3)] == COUNTS
        for d, i, seed in batch:
            assert 0 <= i < SIZES[d]
            assert isinstance(seed, int) and seed >= 0


def test_each_pass_is_a_permutation_and_passes_are_reshuffled():
    # dataset 0 (size 10) with 4 per batch: positions 0..9 are pass 0, 10..19 pass 1.
    s = MixedBatchSampler([10], [5], seed=1, num_batches=4)
    items = [i for batch in s for _, i, _ in batch]
    assert sorted(items[:10]) == list(range(10))
    assert sorted(items[10:20]) == list(range(10))
    assert items[:10] != items[10:20]
    # every stream position has its own augmentation seed, even when the same image recurs
    seeds = [sd for batch in MixedBatchSampler([10], [5], seed=1, num_batches=4) for _, _, sd in batch]
    assert len(set(seeds)) == len(seeds)


def test_streams_are_independent_of_other_datasets_counts():
    # Dataset 0's stream depends only on (seed, 0, pass): changing dataset 1's count leaves it alone.
    a = MixedBatchSampler([20, 30], [4, 4], seed=7, num_batches=10)
    b = MixedBatchSampler([20, 30], [4, 8], seed=7, num_batches=10)
    seq_a = [(i, sd) for batch in a for d, i, sd in batch if d == 0]
    seq_b = [(i, sd) for batch in b for d, i, sd in batch if d == 0]
    assert seq_a == seq_b


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_disjoint_and_counts_add_up(world_size):
    counts = [5, 3, 8]  # 16 total; 5 and 3 do not divide evenly
    samplers = [
        MixedBatchSampler(SIZES, counts, seed=2, rank=r, world_size=world_size, num_batches=12)
        for r in range(world_size)
    ]
    single = MixedBatchSampler(SIZES, counts, seed=2, num_batches=12)
    per_rank_totals = np.zeros((world_size, 3), dtype=int)
    for t in range(12):
        parts = [s.batch(t) for s in samplers]
        # same global stream: the union of the ranks' parts is the single-process batch
        union = sorted(x for p in parts for x in p)
        assert union == sorted(single.batch(t))
        # disjoint stream positions: seeds are unique per position
        seeds = [sd for p in parts for _, _, sd in p]
        assert len(seeds) == len(set(seeds)) == sum(counts)
        for r, p in enumerate(parts):
            assert len(p) == sum(counts) // world_size
            c = Counter(d for d, _, _ in p)
            per_rank_totals[r] += [c[d] for d in range(3)]
        col = np.array([[Counter(d for d, _, _ in p)[d] for d in range(3)] for p in parts]).sum(0)
        assert col.tolist() == counts
    # the left-over samples rotate, so over world_size*k batches every rank gets the same number per dataset
    if 12 % world_size == 0:
        assert (per_rank_totals == per_rank_totals[0]).all()


def test_resume_from_state_continues_exactly():
    full = take(MixedBatchSampler(SIZES, COUNTS, seed=5, num_batches=8), 8) + take(
        MixedBatchSampler(SIZES, COUNTS, seed=5, num_batches=8, start_batch=8), 8
    )
    s = MixedBatchSampler(SIZES, COUNTS, seed=5, num_batches=8)
    first = take(s, 5)
    state = s.state_dict()
    assert state["batch_index"] == 5 and state["seed"] == 5
    resumed = MixedBatchSampler(SIZES, COUNTS, seed=5, num_batches=8)
    resumed.load_state_dict(state)
    rest = list(resumed)  # the rest of the epoch: batches 5..7
    assert len(rest) == 3
    nxt = list(resumed)  # the next full epoch
    assert len(nxt) == 8
    assert first + rest + nxt[:8] == full[:16]


def test_epochs_continue_the_stream():
    s = MixedBatchSampler(SIZES, COUNTS, seed=0, num_batches=4)
    e0, e1 = list(s), list(s)
    assert len(e0) == len(e1) == len(s) == 4
    assert e0 != e1
    assert e1 == [s.batch(t) for t in range(4, 8)]


def test_position_fn_overrides_prefetch_overshoot():
    consumed = {"n": 0}
    s = MixedBatchSampler(SIZES, COUNTS, seed=0, num_batches=10, position_fn=lambda: consumed["n"])
    it = iter(s)
    for _ in range(6):  # a prefetching loader pulled 6 batches ...
        next(it)
    consumed["n"] = 4  # ... but training only consumed 4 before stopping this epoch
    again = list(s)
    assert again[0] == s.batch(4) and len(again) == 6


def test_resume_with_other_world_size_keeps_global_sequence():
    s1 = MixedBatchSampler(SIZES, [4, 4, 8], seed=9, num_batches=6)
    list(itertools.islice(iter(s1), 3))
    state = s1.state_dict()
    parts = []
    for r in range(2):
        s2 = MixedBatchSampler(SIZES, [4, 4, 8], seed=9, rank=r, world_size=2, num_batches=6)
        s2.load_state_dict(state)
        parts.append(next(iter(s2)))
    assert sorted(parts[0] + parts[1]) == sorted(s1.batch(3))


def test_proportional_shares_follow_sizes():
    sizes = [100, 300, 600]
    s = MixedBatchSampler(sizes, mode="proportional", batch_size=50, seed=0, num_batches=200)
    c = Counter(d for batch in s for d, _, _ in batch)
    total = sum(c.values())
    assert total == 50 * 200
    for d, n in enumerate(sizes):
        assert abs(c[d] / total - n / sum(sizes)) < 0.01
    # one pass over the concatenation (20 batches) visits every sample exactly once
    s = MixedBatchSampler(sizes, mode="proportional", batch_size=50, seed=0, num_batches=20)
    seen = Counter((d, i) for batch in s for d, i, _ in batch)
    assert len(seen) == sum(sizes) and set(seen.values()) == {1}


def test_proportional_ranks_disjoint():
    parts = [
        MixedBatchSampler([40, 60], mode="proportional", batch_size=12, rank=r, world_size=3).batch(2)
        for r in range(3)
    ]
    assert all(len(p) == 4 for p in parts)
    keys = [(d, i) for p in parts for d, i, _ in p]
    assert len(set(keys)) == 12


class _SeededNoise(Dataset):
    """Map-style dataset keyed by (dataset_idx, sample_idx, seed): returns seeded random tensors."""

    def __getitem__(self, ref):
        d, i, seed = ref
        rng = np.random.default_rng(seed)
        return torch.from_numpy(rng.standard_normal(8).astype(np.float32)) + 100 * d + i

    def __len__(self):
        return 10**6


def test_dataloader_workers_give_identical_tensors():
    def run(workers):
        s = MixedBatchSampler(SIZES, COUNTS, seed=11, num_batches=4)
        dl = DataLoader(_SeededNoise(), batch_sampler=s, num_workers=workers)
        return [b.clone() for b in dl]

    a, b = run(0), run(2)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dataset_sizes=[10, 0], batch_counts=[4, 2], names=["coco", "mpii"]), "mpii has batch count 2"),
        (dict(dataset_sizes=[10, 5], batch_counts=[0, 0]), "sum to 0"),
        (dict(dataset_sizes=[10, 5], batch_counts=[4, -1]), "must be >= 0"),
        (dict(dataset_sizes=[10, 5], batch_counts=[4]), "one count per dataset"),
        (dict(dataset_sizes=[10, 5], batch_counts=[4, 4], batch_size=10), "sum to 8"),
        (dict(dataset_sizes=[10, 5], batch_counts=[4, 3], world_size=2), "not divisible by world_size"),
        (dict(dataset_sizes=[10, 5], mode="proportional"), "positive global batch_size"),
        (
            dict(dataset_sizes=[10, 5], batch_counts=[4, 4], mode="weighted"),
            "valid modes: fixed, proportional",
        ),
        (dict(dataset_sizes=[10, 5], batch_counts=[4, 4], rank=2, world_size=2), "rank must be"),
        (dict(dataset_sizes=[10, 5], batch_counts=[4, 4], seed=-1), "seed"),
        (dict(dataset_sizes=[], batch_counts=[]), "at least one dataset"),
    ],
)
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixedBatchSampler(**kwargs)


def test_zero_count_empty_dataset_is_allowed():
    s = MixedBatchSampler([10, 0], [4, 0], num_batches=2)
    assert all(d == 0 for batch in s for d, _, _ in batch)
