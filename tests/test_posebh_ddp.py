"""PoseBH under DDP: the prototype EMA is averaged over the ranks (two spawned CPU processes)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from multipose.bridges.posebh import PAPER_WEIGHTS
from multipose.bridges.posebh.prototypes import ema_update
from multipose.lit_module import PoseLitModule
from test_lit_module import model_config
from test_posebh import _gaussian_batch
from train_helpers import ddp_spawn_trainer


class _RankBatches(torch.utils.data.Dataset):
    """One mixed batch per rank, different on each rank (seed = rank)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        batch = _gaussian_batch([0, 1, 2, i % 3], seed=i)
        return {k: v for k, v in batch.items()}


def _collate(items):
    return items[0]


class _LocalUpdate(L.Callback):
    """Before the module's own hook averages the ranks: this rank's EMA result from its own statistics."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bridge = pl_module.bridges["posebh"]
        v, n = bridge._pending
        local = ema_update(bridge.prototypes, v, n, float(bridge.cfg["momentum"]))
        torch.save(local, Path(self.out) / f"local{trainer.global_rank}.pt")

    def on_fit_end(self, trainer, pl_module) -> None:
        torch.save(
            pl_module.bridges["posebh"].prototypes.clone(), Path(self.out) / f"end{trainer.global_rank}.pt"
        )


class _Lit(PoseLitModule):
    def train_dataloader(self):
        # each rank reads the item of its own rank (no distributed sampler: one batch per rank, different data)
        data = torch.utils.data.Subset(_RankBatches(), [self.global_rank])
        return torch.utils.data.DataLoader(data, batch_size=1, collate_fn=_collate)


@pytest.mark.slow
def test_ddp_prototypes_equal_across_ranks_and_equal_to_the_mean(tmp_path):
    torch.manual_seed(0)
    lit = _Lit(
        model_config(),
        optim={"lr": 1e-3, "warmup_iters": 0},
        loss={"posebh": dict(PAPER_WEIGHTS)},
        bridge={"posebh": {"deconv_filters": [16, 16], "dim": 8, "momentum": 0.9}},
    )
    trainer = ddp_spawn_trainer(
        max_steps=1,
        use_distributed_sampler=False,
        limit_val_batches=0,
        callbacks=[_LocalUpdate(str(tmp_path))],
    )
    trainer.fit(lit)
    local = [torch.load(tmp_path / f"local{r}.pt") for r in (0, 1)]
    end = [torch.load(tmp_path / f"end{r}.pt") for r in (0, 1)]
    assert not torch.allclose(local[0], local[1])  # the ranks saw different pixels
    assert torch.equal(end[0], end[1])
    expect = F.normalize(0.5 * (local[0] + local[1]), dim=-1)
    assert torch.allclose(end[0], expect, atol=1e-6)
