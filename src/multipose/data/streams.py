"""Mixed-batch sampling over several datasets: per-dataset infinite streams, random access, DDP-aware.

Model
-----
Every dataset ``d`` of size ``n_d`` is an **infinite stream**: pass ``p`` over the dataset visits its
samples in the order ``perm(d, p)``, a permutation drawn from ``SeedSequence((seed, d, p))``. Each dataset
keeps its own pass counter, so a small dataset cycles many times while a large one may never finish a pass
(MeTRAbs/ACAE style); training length is counted in batches, not epochs of any one dataset.

``mode="fixed"``
    Global batch ``t`` holds exactly ``batch_counts[d]`` samples of dataset ``d``: stream positions
    ``[t * c_d, (t + 1) * c_d)`` of stream ``d``. Inside a batch the samples are grouped by dataset, in mix
    order.
``mode="proportional"``
    ViTPose++ mixing: all datasets are concatenated into one stream of ``sum(n_d)`` samples that is
    reshuffled every pass, so each dataset's expected share of a batch is proportional to its size.
    Global batch ``t`` is positions ``[t * B, (t + 1) * B)`` of that stream.

Every batch is a **pure function of** ``(seed, batch_index)`` (random access, no replay), so the whole
sampler state is the index of the next batch (:meth:`MixedBatchSampler.state_dict`). Each sample also gets
its own augmentation seed, derived from its stream position, so the loaded tensors do not depend on the
number of DataLoader workers.

Distributed training
--------------------
Every rank walks the *same* global stream and keeps a disjoint part of each global batch. In fixed mode rank
``r`` takes ``c_d // W`` samples of dataset ``d`` plus, for the ``c_d % W`` left-over samples, one more on
some ranks: left-overs are dealt round-robin over the ranks, continuing across datasets and starting at rank
``t % W`` for batch ``t``. Per-rank counts therefore add up to the global counts, every rank gets exactly
``B / W`` samples, and the extra samples rotate over the ranks from batch to batch. In proportional mode rank
``r`` takes the contiguous slice ``[r * B/W, (r + 1) * B/W)`` of the global batch. Because positions are
global, a run may be resumed with a different world size and still continue the same global sequence.

Epochs and resuming
-------------------
Lightning epochs are ``num_batches`` batches long and aligned to multiples of ``num_batches`` in the global
batch index: one iteration of the sampler yields the batches from its current position up to the next
multiple of ``num_batches`` (a full epoch normally, the rest of the epoch after resuming mid-epoch, which
is what Lightning's restored loop expects). With ``num_workers > 0`` the DataLoader prefetches batches,
so the sampler's own counter runs ahead of training; pass ``position_fn`` (a callable returning the number
of batches training has *consumed*) to make every new iteration start from that count instead. The
DataModule does this and stores the consumed count in Lightning checkpoints.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["MixedBatchSampler", "SampleRef", "MODES"]

log = logging.getLogger(__name__)

#: One sample of a batch: ``(dataset_idx, sample_idx, sample_seed)``.
SampleRef = tuple[int, int, int]

MODES = ("fixed", "proportional")

# Tag that separates the proportional-mode stream's seeds from the per-dataset streams' (dataset indices
# are small, so they never collide with it).
_PROPORTIONAL_TAG = 0x50524F50  # "PROP"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic): a cheap, well-mixed integer hash."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return x


class _Stream:
    """Random access into one infinite reshuffled stream of ``size`` items.

    Pass ``p`` is ``permutation(size)`` drawn from ``SeedSequence(key + (p,))``; the item at stream position
    ``q`` gets the seed ``splitmix64(base_p + (q mod size) * golden)`` where ``base_p`` comes from the same
    pass seed, so seeds are unique per (pass, offset) and independent of how the stream is sliced.
    """

    def __init__(self, size: int, key: tuple[int, ...], cache_passes: int = 4):
        self.size = size
        self.key = key
        self._cache: OrderedDict[int, tuple[np.ndarray, np.uint64]] = OrderedDict()
        self._cache_passes = cache_passes

    def _pass(self, p: int) -> tuple[np.ndarray, np.uint64]:
        hit = self._cache.get(p)
        if hit is not None:
            self._cache.move_to_end(p)
            return hit
        perm_ss, seed_ss = np.random.SeedSequence((*self.key, p)).spawn(2)
        perm = np.random.Generator(np.random.PCG64(perm_ss)).permutation(self.size)
        base = seed_ss.generate_state(1, np.uint64)[0]
        self._cache[p] = (perm, base)
        if len(self._cache) > self._cache_passes:
            self._cache.popitem(last=False)
        return perm, base

    def take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Items and seeds at stream positions ``[start, start + count)`` (int64 indices, uint64 seeds)."""
        q = np.arange(start, start + count, dtype=np.int64)
        passes, offsets = np.divmod(q, self.size)
        items = np.empty(count, dtype=np.int64)
        seeds = np.empty(count, dtype=np.uint64)
        for p in np.unique(passes):
            sel = passes == p
            perm, base = self._pass(int(p))
            items[sel] = perm[offsets[sel]]
            with np.errstate(over="ignore"):
                seeds[sel] = _splitmix64(base + offsets[sel].astype(np.uint64) * _GOLDEN)
        return items, seeds


def _as_int_list(values: Sequence[int], what: str) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not float(v).is_integer():
            raise ValueError(f"{what}[{i}] = {v!r} is not an integer; give whole numbers")
        out.append(int(v))
    return out


class MixedBatchSampler(Sampler[list[SampleRef]]):
    """Batch sampler that interleaves per-dataset infinite streams (see the module docstring).

    Args:
        dataset_sizes: number of samples of each dataset, in mix order.
        batch_counts: fixed mode: samples of each dataset per **global** batch (summed over ranks).
            Ignored (may be ``None``) in proportional mode.
        mode: ``"fixed"`` or ``"proportional"``.
        batch_size: global batch size. Fixed mode: optional, must equal ``sum(batch_counts)``.
            Proportional mode: required.
        seed: non-negative integer; the whole sequence is a function of it.
        rank, world_size: this process's slice of every global batch.
        start_batch: global index of the first batch to yield (resume position).
        num_batches: batches per epoch (``len(sampler)``). Default: ``ceil(sum(dataset_sizes) / batch_size)``.
        names: dataset names, only used in error messages.
        position_fn: optional callable returning the global index of the next batch training will consume;
            when given, each new iteration starts there (see "Epochs and resuming" above).

    Yields:
        per batch, a list of ``(dataset_idx, sample_idx, sample_seed)`` for this rank; ``sample_seed`` is a
        non-negative Python int for ``np.random.default_rng``.
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        batch_counts: Sequence[int] | None = None,
        mode: str = "fixed",
        batch_size: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        num_batches: int | None = None,
        names: Sequence[str] | None = None,
        position_fn: Callable[[], int] | None = None,
    ):
        sizes = _as_int_list(dataset_sizes, "dataset_sizes")
        if not sizes:
            raise ValueError("MixedBatchSampler needs at least one dataset (dataset_sizes is empty)")
        self.names = list(names) if names is not None else [f"dataset #{i}" for i in range(len(sizes))]
        if len(self.names) != len(sizes):
            raise ValueError(f"got {len(self.names)} names for {len(sizes)} dataset sizes")
        for name, n in zip(self.names, sizes):
            if n < 0:
                raise ValueError(f"size of {name} is {n}; dataset sizes must be >= 0")
        if mode not in MODES:
            raise ValueError(f"unknown mixing mode {mode!r}; valid modes: {', '.join(MODES)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (isinstance(world_size, (int, np.integer)) and world_size >= 1):
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not (isinstance(rank, (int, np.integer)) and 0 <= rank < world_size):
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")

        if mode == "fixed":
            if batch_counts is None:
                raise ValueError("fixed mode needs batch_counts (samples of each dataset per global batch)")
            counts = _as_int_list(batch_counts, "batch_counts")
            if len(counts) != len(sizes):
                raise ValueError(
                    f"batch_counts has {len(counts)} entries but there are {len(sizes)} datasets; "
                    "give one count per dataset, in mix order"
                )
            for name, c, n in zip(self.names, counts, sizes):
                if c < 0:
                    raise ValueError(f"batch count of {name} is {c}; counts must be >= 0")
                if c > 0 and n == 0:
                    raise ValueError(
                        f"{name} has batch count {c} but no samples (size 0); check its annotation file "
                        "and filters, or set its batch_count to 0"
                    )
            total = sum(counts)
            if total <= 0:
                raise ValueError("batch_counts sum to 0; at least one dataset needs a positive count")
            if batch_size is not None and int(batch_size) != total:
                raise ValueError(
                    f"batch_size={batch_size} but batch_counts {counts} sum to {total}; make them agree"
                )
            self.batch_counts: list[int] | None = counts
            self.batch_size = total
        else:
            if batch_size is None or int(batch_size) <= 0:
                raise ValueError(f"proportional mode needs a positive global batch_size, got {batch_size!r}")
            if sum(sizes) <= 0:
                raise ValueError("proportional mode: all datasets are empty (sizes sum to 0)")
            self.batch_counts = None
            self.batch_size = int(batch_size)

        if self.batch_size % world_size:
            raise ValueError(
                f"global batch size {self.batch_size} is not divisible by world_size={world_size}; "
                "change the batch size (or the batch counts) so every rank gets the same number of samples"
            )
        if num_batches is None:
            num_batches = max(1, math.ceil(sum(sizes) / self.batch_size))
        if int(num_batches) < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        if int(start_batch) < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")

        self.dataset_sizes = sizes
        self.mode = mode
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.num_batches = int(num_batches)
        self.batch_index = int(start_batch)  # global index of the next batch this sampler yields
        self.position_fn = position_fn
        if mode == "fixed":
            self._streams = [_Stream(n, (self.seed, d)) if n > 0 else None for d, n in enumerate(sizes)]
        else:
            self._concat = _Stream(sum(sizes), (self.seed, _PROPORTIONAL_TAG))
            self._offsets = np.cumsum([0, *sizes])

    # ------------------------------------------------------------------ counts

    @property
    def per_rank_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def rank_counts(self, batch_index: int) -> np.ndarray:
        """Fixed mode: ``[world_size, num_datasets]`` samples of each dataset per rank in global batch
        ``batch_index``. Columns sum to the global counts, rows to ``batch_size / world_size``."""
        if self.batch_counts is None:
            raise ValueError("rank_counts is only defined in fixed mode")
        w = self.world_size
        counts = np.zeros((w, len(self.batch_counts)), dtype=np.int64)
        cursor = batch_index % w
        for d, c in enumerate(self.batch_counts):
            base, extra = divmod(c, w)
            counts[:, d] = base
            for j in range(extra):
                counts[(cursor + j) % w, d] += 1
            cursor = (cursor + extra) % w
        return counts

    # ------------------------------------------------------------------ batches

    def global_batch(self, batch_index: int) -> list[list[SampleRef]]:
        """All ranks' parts of global batch ``batch_index`` (a list indexed by rank)."""
        if batch_index < 0:
            raise ValueError(f"batch_index must be >= 0, got {batch_index}")
        w = self.world_size
        parts: list[list[SampleRef]] = [[] for _ in range(w)]
        if self.mode == "fixed":
            assert self.batch_counts is not None
            rc = self.rank_counts(batch_index)
            for d, c in enumerate(self.batch_counts):
                if c == 0:
                    continue
                stream = self._streams[d]
                assert stream is not None
                items, seeds = stream.take(batch_index * c, c)
                start = 0
                for r in range(w):
                    k = int(rc[r, d])
                    parts[r].extend(
                        (d, int(i), int(s))
                        for i, s in zip(items[start : start + k], seeds[start : start + k])
                    )
                    start += k
        else:
            b = self.batch_size
            items, seeds = self._concat.take(batch_index * b, b)
            ds = np.searchsorted(self._offsets, items, side="right") - 1
            local = items - self._offsets[ds]
            per = b // w
            for r in range(w):
                sl = slice(r * per, (r + 1) * per)
                parts[r] = [(int(d), int(i), int(s)) for d, i, s in zip(ds[sl], local[sl], seeds[sl])]
        return parts

    def batch(self, batch_index: int) -> list[SampleRef]:
        """This rank's part of global batch ``batch_index``."""
        return self.global_batch(batch_index)[self.rank]

    def __iter__(self) -> Iterator[list[SampleRef]]:
        start = self.position_fn() if self.position_fn is not None else self.batch_index
        start = int(start)
        end = (start // self.num_batches + 1) * self.num_batches
        for t in range(start, end):
            self.batch_index = t + 1
            yield self.batch(t)

    def __len__(self) -> int:
        return self.num_batches

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Position plus what defines the sequence (checked, with a warning, on load)."""
        return {
            "batch_index": self.batch_index,
            "seed": self.seed,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "batch_counts": list(self.batch_counts) if self.batch_counts is not None else None,
            "dataset_sizes": list(self.dataset_sizes),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state["batch_index"]``. If the seed, mode, counts or dataset sizes differ from the
        saved ones, the run continues from the same batch index but cannot reproduce the original sequence;
        a warning says which fields differ."""
        if "batch_index" not in state:
            raise KeyError(
                "sampler state has no 'batch_index'; was it saved by MixedBatchSampler.state_dict()?"
            )
        mine = self.state_dict()
        changed = [
            k
            for k in ("seed", "mode", "batch_size", "batch_counts", "dataset_sizes")
            if k in state and state[k] != mine[k]
        ]
        if changed:
            log.warning(
                "resuming the mixed-batch stream with changed %s (saved %s, now %s): the batch sequence "
                "will differ from the original run",
                ", ".join(changed),
                {k: state[k] for k in changed},
                {k: mine[k] for k in changed},
            )
        index = int(state["batch_index"])
        if index < 0:
            raise ValueError(f"saved batch_index {index} is negative")
        self.batch_index = index
