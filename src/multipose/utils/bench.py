"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


def sync(device: str) -> None:
    """Wait for queued GPU work (a no-op on CPU) so wall-clock timings are honest."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, iters: int = 10) -> float:
    """FLOP/s of a plain ``n x n @ n x n`` matmul in ``dtype``: the practical dense peak that model throughput
    is compared with."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - start)


class StepTimer(Callback):
    """Lightning callback for ``scripts/bench_train.py --real``: wall time of the training steps after the first
    ``skip`` (loader waits, forward, backward, optimiser, logging and callbacks included), written as JSON to
    ``<trainer.default_root_dir>/step_timer.json`` at the end of training.

    Added to a real run from the command line: ``+callbacks.step_timer._target_=multipose.utils.bench.StepTimer``.
    """

    def __init__(self, skip: int = 20) -> None:
        self.skip, self.times, self.samples = int(skip), [], 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) > self.skip + 1:
            self.samples += int(batch["image"].shape[0])

    def on_train_end(self, trainer, pl_module) -> None:
        if len(self.times) <= self.skip + 1:
            raise RuntimeError(
                f"StepTimer: only {len(self.times)} steps ran; raise trainer.max_steps above skip={self.skip}"
            )
        seconds = self.times[-1] - self.times[self.skip]
        steps = len(self.times) - 1 - self.skip
        out = {
            "steps": steps,
            "seconds": seconds,
            "s_per_step": seconds / steps,
            "samples_per_s": self.samples / seconds,
            "threads": torch.get_num_threads(),
        }
        if trainer.is_global_zero:
            Path(trainer.default_root_dir, "step_timer.json").write_text(json.dumps(out, indent=1))
