"""The lines above the table: the command, the code, the stage-0 checkpoint and one line per run with its batch
check."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

from multipose.compare.identity import file_sha256
from multipose.compare.runner import RunResult, git_commit

__all__ = ["header_lines", "run_lines"]


def run_lines(results: Sequence[RunResult], steps: int) -> list[str]:
    """One line per run (status, wall time, steps and batches verified) and the paired-batch check per seed."""
    lines = [
        "| run | status | wall time | optimiser steps | batch digest | run dir |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        d = r.digest or {}
        steps_txt = f"{d['global_step']}" if "global_step" in d else "—"
        if "global_step" in d and d["global_step"] != steps:
            steps_txt += f" (**expected {steps}**)"
        wall = f"{r.wall_s:.0f} s" if r.wall_s is not None else "—"
        status = r.status + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.plan.label} | {status} | {wall} | {steps_txt} | {d.get('digest', '—')[:12]} | {r.plan.run_dir} |"
        )
    lines.append("")
    by_seed: dict[int, dict[str, str]] = {}
    for r in results:
        if r.digest:
            by_seed.setdefault(r.plan.seed, {})[r.plan.arm] = r.digest.get("digest", "")
    for seed, arms in sorted(by_seed.items()):
        if len(arms) < 2:
            lines.append(f"- seed {seed}: only one arm finished, batches not compared")
        elif len(set(arms.values())) == 1:
            lines.append(f"- seed {seed}: both arms trained on identical batches (same digest)")
        else:
            lines.append(f"- seed {seed}: **the arms saw different batches** - the comparison is not paired")
    for r in results:
        if r.status == "failed":
            lines.append(f"- **{r.plan.label} failed** ({r.note}); its arm's means use the other seeds")
        elif r.status == "missing":
            lines.append(f"- **{r.plan.label} has not finished**; its arm's means use the other seeds")
    return lines


def header_lines(
    command: str, stage0: Path, steps: int, epochs: int, results: Sequence[RunResult]
) -> list[str]:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- command: `{command}`",
        f"- date: {now}; code: {git_commit()}",
        f"- stage 0: `{stage0}` (sha256 {file_sha256(stage0)[:12]})",
        f"- {steps} optimiser steps per run ({epochs} epoch{'s' if epochs != 1 else ''} of {steps // epochs} "
        "batches), one validation at the end",
        "",
        *run_lines(results, steps),
    ]
