"""Running the plans: one ``python -m multipose.train`` subprocess after another, reusing finished runs, resuming
interrupted ones and recording failed ones."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multipose.compare.plans import RunPlan
from multipose.compare.protocol import DIGEST_FILE, RUN_INFO
from multipose.utils.run import write_json_atomic

__all__ = ["RunResult", "execute", "git_commit", "run_state", "subprocess_launcher"]


@dataclass
class RunResult:
    plan: RunPlan
    status: str  # reused | finished | resumed | failed | missing
    returncode: int | None = None
    wall_s: float | None = None
    metrics: dict[str, Any] | None = None
    digest: dict[str, Any] | None = None
    log_file: Path | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.metrics is not None


def run_state(plan: RunPlan) -> str:
    """``done`` (``metrics.json`` under the same config key), ``interrupted`` (same key, ``last.ckpt`` but no
    metrics) or ``new``."""
    info_file = plan.run_dir / RUN_INFO
    if not info_file.is_file():
        return "new"
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return "new"
    if info.get("key") != plan.key:
        return "new"
    if (plan.run_dir / "metrics.json").is_file():
        return "done"
    if (plan.run_dir / "checkpoints" / "last.ckpt").is_file():
        return "interrupted"
    return "new"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def subprocess_launcher(cmd: list[str], log_file: Path) -> int:
    """Run ``cmd`` with its output in ``log_file``; on Ctrl-C let the child finish its step and write
    ``last.ckpt`` (it got the same SIGINT), then re-raise."""
    with log_file.open("a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.wait()
            raise


def execute(
    plans: Sequence[RunPlan],
    launcher: Callable[[list[str], Path], int] = subprocess_launcher,
    python: str = sys.executable,
    echo: Callable[[str], None] = print,
    train: bool = True,
) -> list[RunResult]:
    """Run ``plans`` in order (reusing finished ones, resuming interrupted ones); never stops at a failure.
    ``train=False`` trains nothing: finished runs are collected, the others reported as ``missing``."""
    results = []
    commit = git_commit()
    for plan in plans:
        state = run_state(plan)
        if state == "done":
            echo(f"[compare] {plan.label}: reusing {plan.run_dir}")
            results.append(_collect(plan, "reused"))
            continue
        if not train:
            results.append(RunResult(plan, "missing", note=f"not finished ({state})"))
            continue
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        resume = plan.run_dir / "checkpoints" / "last.ckpt" if state == "interrupted" else None
        info = {
            "key": plan.key,
            "arm": plan.arm,
            "seed": plan.seed,
            "overrides": plan.overrides,
            "git": commit,
        }
        write_json_atomic(plan.run_dir / RUN_INFO, info)
        log_file = plan.run_dir / "compare_train.log"
        cmd = plan.command(python, resume)
        echo(
            f"[compare] {plan.label}: {'resuming' if resume else 'training'} in {plan.run_dir} (log: {log_file})"
        )
        start = time.perf_counter()
        code = launcher(cmd, log_file)
        wall = time.perf_counter() - start
        write_json_atomic(plan.run_dir / RUN_INFO, {**info, "returncode": code, "wall_s": round(wall, 1)})
        result = _collect(plan, "resumed" if resume else "finished", code, wall, log_file)
        if code != 0 or result.metrics is None:
            result.status = "failed"
            result.metrics = None
            result.note = f"exit code {code}; see {log_file}"
        echo(f"[compare] {plan.label}: {result.status} after {wall:.0f} s")
        results.append(result)
    return results


def _collect(
    plan: RunPlan,
    status: str,
    code: int | None = None,
    wall: float | None = None,
    log_file: Path | None = None,
) -> RunResult:
    if wall is None:
        wall = (_read_json(plan.run_dir / RUN_INFO) or {}).get("wall_s")
    return RunResult(
        plan,
        status,
        code,
        wall,
        metrics=_read_json(plan.run_dir / "metrics.json"),
        digest=_read_json(plan.run_dir / DIGEST_FILE),
        log_file=log_file,
    )
