"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

import torch


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
