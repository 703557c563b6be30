"""The paired comparison protocol behind ``scripts/compare.py``: baseline vs method continuations of one stage-0
checkpoint, the same optimiser steps on the same batches, several seeds, one table with the seed spread as the
noise floor.

A *method* is nothing but a list of Hydra overrides of ``conf/train.yaml`` (``+bridge=acae``,
``+experiment=posebh_demo``, ``loss.heatmap=2.0``); this module knows nothing of any method's internals.

Pieces (each usable on its own, all tested in ``tests/test_compare.py``):

* :func:`plan_continuation` - the overrides and the config key of one run (arm, seed). The protocol owns the
  keys in :data:`PROTOCOL_KEYS` (start weights, seed, run length, validation cadence); a method or ``--base``
  that sets one is refused.
* :func:`config_key` - sha256 of the composed, resolved config (with the stage-0 checkpoint replaced by its
  content hash): the identity of a run, used to reuse finished runs and as the stage-0 cache key.
* :func:`execute` - run the plans one after another as ``python -m multipose.train`` subprocesses, reusing a run
  whose ``metrics.json`` exists under the same key, resuming one that was interrupted (``last.ckpt`` present),
  recording a failed one (exit code, log file) instead of dropping it.
* :class:`BatchDigest` - a Lightning callback added to every protocol run: a hash of each training batch
  (images, dataset indices, annotation ids) and the final step count, written to ``batch_digest.json``. The
  table says whether both arms of a seed really saw the same batches for the same number of steps.
* :func:`summarize` / :func:`markdown_report` / :func:`csv_report` - the table: own AP/PCKh per dataset,
  cross-skeleton AP, cross-head consistency, the method's own keys; baseline mean, method mean, difference, and
  each arm's seed spread (max - min over seeds; ``|seed0 - seed1|`` for two seeds) as the noise floor.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from multipose.utils.run import write_json_atomic

__all__ = [
    "PROTOCOL_KEYS",
    "STAGE0_PRESETS",
    "BatchDigest",
    "ProtocolError",
    "RunPlan",
    "RunResult",
    "Row",
    "config_key",
    "csv_report",
    "execute",
    "file_sha256",
    "markdown_report",
    "method_name_from",
    "plan_continuation",
    "plan_stage0",
    "run_lines",
    "run_state",
    "summarize",
]

#: keys the protocol sets itself; a method (or ``--base``) must not set them
PROTOCOL_KEYS = (
    "init_from",
    "ckpt_path",
    "resume",
    "seed",
    "data.seed",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.min_epochs",
    "data.steps_per_epoch",
    "trainer.check_val_every_n_epoch",
    "trainer.val_check_interval",
    "hydra.run.dir",
)

#: stage-0 presets: the overrides that train the start checkpoint when none is given
STAGE0_PRESETS: dict[str, list[str]] = {"cpu_study": ["+experiment=cpu_study"], "default": []}

RUN_INFO = "compare_run.json"
DIGEST_FILE = "batch_digest.json"
BATCH_DIGEST_TARGET = "multipose.utils.compare.BatchDigest"


class ProtocolError(ValueError):
    """A comparison that cannot be run as asked (bad overrides, missing checkpoint); the message says what to do."""


# ---------------------------------------------------------------------------------------------- identity


_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file (memoised per process on path, size and mtime: checkpoints are 50 MB)."""
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _SHA256_MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA256_MEMO[memo] = h.hexdigest()
    return _SHA256_MEMO[memo]


def _override_key(override: str) -> str:
    """``a.b`` of ``a.b=1``, ``+a.b=1``, ``++a.b=1``, ``~a.b``."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def config_key(overrides: Sequence[str], files: Mapping[str, str | os.PathLike] | None = None) -> str:
    """sha256 of the composed, resolved ``conf/train.yaml`` under ``overrides`` - the identity of a run.

    ``files`` names config keys holding file paths (e.g. ``{"init_from": ckpt}``) whose *content* hash replaces
    the path, so a renamed checkpoint keeps its key and a replaced one gets a new key. The run directory
    (``paths.output_dir``) is not part of the key. A composition error is re-raised as :class:`ProtocolError`
    naming the overrides.
    """
    from omegaconf import OmegaConf, open_dict

    from multipose.config_validation import validate_train_config
    from multipose.utils.compose import compose_config

    try:
        cfg = compose_config("train", list(overrides))
    except Exception as err:  # Hydra's composition errors: unknown group option, bad syntax
        raise ProtocolError(
            f"the overrides {' '.join(overrides)!r} do not compose: {err}. Check the --method / --base "
            "overrides (a group option that does not exist, or a key that needs '+')."
        ) from None
    try:
        validate_train_config(cfg, check_files=False)
    except ValueError as err:  # ConfigError / DataConfigError: the message names the option
        raise ProtocolError(
            f"the overrides {' '.join(overrides)!r} are not a valid training config: {err}"
        ) from None
    with open_dict(cfg):
        cfg.paths.output_dir = "<run dir>"
        cfg.paths.work_dir = "<work dir>"
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key, path in (files or {}).items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = f"sha256:{file_sha256(path)}"
    blob = json.dumps(tree, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def method_name_from(overrides: Sequence[str]) -> str:
    """A short name for a method given as overrides: ``+bridge=acae`` -> ``acae``, ``loss.heatmap=2.0`` ->
    ``loss.heatmap-2.0``."""
    parts = []
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        parts.append(value if key.split(".")[-1] in ("bridge", "experiment", "prompt") else f"{key}-{value}")
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "-", "_".join(parts)).strip("-")
    return name[:60] or "method"


# ---------------------------------------------------------------------------------------------- plans


@dataclass
class RunPlan:
    """One training run of the protocol: ``python -m multipose.train <overrides> hydra.run.dir=<run_dir>``."""

    arm: str
    seed: int
    overrides: list[str]
    key: str
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"

    def command(self, python: str = sys.executable, resume_from: Path | None = None) -> list[str]:
        extra = [f"ckpt_path={resume_from}"] if resume_from is not None else []
        return [python, "-m", "multipose.train", *self.overrides, *extra, f"hydra.run.dir={self.run_dir}"]


def _refuse_protocol_keys(overrides: Sequence[str], where: str) -> None:
    for o in overrides:
        if _override_key(o) in PROTOCOL_KEYS:
            raise ProtocolError(
                f"{where} sets {_override_key(o)!r} ({o}), which the comparison protocol sets itself (start "
                "checkpoint, seed, run length and validation cadence are the same for both arms); remove it "
                "and use --stage0 / --seeds / --steps / --epochs instead"
            )


def steps_per_epoch(steps: int, epochs: int) -> int:
    if steps <= 0 or epochs <= 0:
        raise ProtocolError(f"--steps ({steps}) and --epochs ({epochs}) must be positive")
    if steps % epochs:
        raise ProtocolError(
            f"--steps {steps} is not a multiple of --epochs {epochs}; every epoch has the same number of batches, "
            "so choose steps = epochs x batches per epoch"
        )
    return steps // epochs


def plan_continuation(
    arm: str,
    seed: int,
    stage0: str | os.PathLike,
    steps: int,
    epochs: int,
    out_dir: str | os.PathLike,
    shared: Sequence[str] = (),
    base: Sequence[str] = (),
    method: Sequence[str] = (),
) -> RunPlan:
    """The run of ``arm`` (``baseline`` or the method's name) with ``seed``: weights from ``stage0``
    (``init_from``, weights only), ``steps`` optimiser steps in ``epochs`` equal epochs, one validation at the
    end, ``shared + base + method`` overrides, and the :class:`BatchDigest` callback. The run directory is
    ``<out_dir>/runs/<arm>_seed<seed>_<key[:10]>``."""
    _refuse_protocol_keys(shared, "--shared")
    _refuse_protocol_keys(base, "--base")
    _refuse_protocol_keys(method, "--method")
    stage0 = Path(stage0)
    if not stage0.is_file():
        raise ProtocolError(
            f"stage-0 checkpoint {stage0} does not exist; give --stage0 <file.ckpt> or omit it"
        )
    per_epoch = steps_per_epoch(steps, epochs)
    overrides = [
        *shared,
        *base,
        *method,
        f"init_from={stage0.resolve()}",
        f"seed={int(seed)}",
        f"trainer.max_epochs={epochs}",
        f"data.steps_per_epoch={per_epoch}",
        f"trainer.check_val_every_n_epoch={epochs}",
        f"+callbacks.batch_digest._target_={BATCH_DIGEST_TARGET}",
    ]
    key = config_key(overrides, {"init_from": stage0})
    run_dir = Path(out_dir).resolve() / "runs" / f"{arm}_seed{int(seed)}_{key[:10]}"
    return RunPlan(arm, int(seed), overrides, key, run_dir)


def plan_stage0(
    preset: str, cache_dir: str | os.PathLike, seed: int = 0, shared: Sequence[str] = ()
) -> RunPlan:
    """The stage-0 training run of ``preset`` (:data:`STAGE0_PRESETS`), cached under
    ``<cache_dir>/stage0_<preset>_<key[:10]>``: the key is the composed config, not a file name."""
    if preset not in STAGE0_PRESETS:
        raise ProtocolError(f"--stage0-preset {preset!r} is unknown; choose one of {sorted(STAGE0_PRESETS)}")
    _refuse_protocol_keys(shared, "--shared")
    overrides = [*shared, *STAGE0_PRESETS[preset], f"seed={int(seed)}"]
    key = config_key(overrides)
    run_dir = Path(cache_dir).resolve() / f"stage0_{preset}_{key[:10]}"
    return RunPlan(f"stage0_{preset}", int(seed), overrides, key, run_dir)


def stage0_checkpoint(run_dir: str | os.PathLike) -> Path:
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise ProtocolError(
            f"the stage-0 run {run_dir} finished but wrote no checkpoints/last.ckpt; do not pass callbacks=none "
            "in --shared"
        )
    return ckpt


# ---------------------------------------------------------------------------------------------- running


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


def _git_commit() -> str:
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
    commit = _git_commit()
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


# ---------------------------------------------------------------------------------------------- batches


class BatchDigest(L.Callback):
    """Hash of every training batch this rank saw (images, dataset indices, annotation ids, in order) and the
    final optimiser step, written to ``<run dir>/batch_digest.json`` when training ends. Its state is in the
    checkpoint, so a resumed run's digest covers the whole run."""

    FIELDS = ("dataset_idx", "ann_id", "image")

    def __init__(self, filename: str = DIGEST_FILE) -> None:
        self.filename = filename
        self.batches: list[str] = []

    @classmethod
    def batch_hash(cls, batch: Mapping[str, Any]) -> str:
        h = hashlib.sha256()
        for name in cls.FIELDS:
            t = batch[name]
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(self.batch_hash(batch))

    def summary(self, global_step: int) -> dict[str, Any]:
        return {
            "batches": len(self.batches),
            "global_step": int(global_step),
            "digest": hashlib.sha256("".join(self.batches).encode()).hexdigest(),
        }

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            write_json_atomic(
                Path(trainer.default_root_dir) / self.filename, self.summary(trainer.global_step)
            )

    def state_dict(self) -> dict[str, Any]:
        return {"batches": list(self.batches)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = list(state_dict.get("batches", []))


# ---------------------------------------------------------------------------------------------- the table

#: the last part of a key that the Markdown table shows in the method section (the CSV has every key)
HEADLINE_METRICS = ("AP", "PCKh@0.5", "PCK@0.2", "NME", "CHD", "CHD_bc")
SECTIONS = ("own", "cross", "consistency", "method", "other")
#: COCO detail metrics left out of the Markdown table's method section
DETAIL_METRICS = frozenset({"AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl", "OKS"})


@dataclass
class Row:
    section: str
    key: str
    baseline_key: str | None
    base: list[float] = field(default_factory=list)
    method: list[float] = field(default_factory=list)

    @staticmethod
    def _mean(v: list[float]) -> float:
        return sum(v) / len(v) if v else math.nan

    @staticmethod
    def _spread(v: list[float]) -> float:
        return max(v) - min(v) if len(v) >= 2 else math.nan

    @property
    def base_mean(self) -> float:
        return self._mean(self.base)

    @property
    def method_mean(self) -> float:
        return self._mean(self.method)

    @property
    def diff(self) -> float:
        return self.method_mean - self.base_mean

    @property
    def base_spread(self) -> float:
        return self._spread(self.base)

    @property
    def method_spread(self) -> float:
        return self._spread(self.method)

    @property
    def noise(self) -> float:
        """The larger of the two arms' seed spreads; an arm with fewer than two seeds has none, so the other arm's
        spread counts alone (NaN when neither arm has two seeds)."""
        known = [s for s in (self.base_spread, self.method_spread) if not math.isnan(s)]
        return max(known) if known else math.nan

    @property
    def within_noise(self) -> bool | None:
        """True if ``|diff|`` is not larger than the noise floor; None when either is unknown."""
        d, n = self.diff, self.noise
        if math.isnan(d) or math.isnan(n):
            return None
        return abs(d) <= n


def _section(key: str, primary: frozenset[str]) -> str | None:
    parts = key.split("/")
    if key == "val/score":
        return "own"
    if parts[0] != "val" or len(parts) < 3:
        return None
    if len(parts) == 3:
        return "own" if parts[2] in primary else "other"
    if parts[2] == "cross" and len(parts) == 5:
        return "cross" if parts[4] in primary else "other"
    if parts[2] == "consistency":
        return "consistency"
    return "other"


def _baseline_counterpart(key: str, base_keys: set[str]) -> str | None:
    """The baseline key a method-only variant key is compared with: ``val/<ds>/<variant>/<m>`` ->
    ``val/<ds>/<m>``, ``val/<ds>/cross/<head>/<variant>/<m>`` -> ``val/<ds>/cross/<head>/<m>``."""
    parts = key.split("/")
    if parts[0] != "val":
        return None
    cand = None
    if len(parts) == 4 and parts[2] not in ("cross", "consistency"):
        cand = "/".join([*parts[:2], parts[3]])
    elif len(parts) == 6 and parts[2] == "cross":
        cand = "/".join([*parts[:4], parts[5]])
    return cand if cand in base_keys else None


def _values(runs: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for m in runs:
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def summarize(
    baseline: Sequence[Mapping[str, Any]], method: Sequence[Mapping[str, Any]], primary: Sequence[str] = ()
) -> list[Row]:
    """Rows of the comparison from the ``metrics.json`` dicts of the finished runs of each arm.

    Keys both arms have: ``own`` (each dataset's primary metric and ``val/score``), ``cross``
    (``val/<ds>/cross/<head>/<primary>``), ``consistency`` (``val/<ds>/consistency/*``), ``other`` (every
    other ``val/`` key). Keys only the method runs have go to ``method``; a variant key
    (``val/<ds>/<variant>/<m>``) is compared with the baseline's plain key (``val/<ds>/<m>``), any other
    (residuals, ``train/<bridge>/...``) has no baseline. ``primary``: the metric names counted as primary
    (default: :data:`multipose.evaluation.mix.PRIMARY_METRIC`).
    """
    if not primary:
        from multipose.evaluation.mix import PRIMARY_METRIC

        primary = tuple(PRIMARY_METRIC.values())
    prim = frozenset(primary)
    base_keys = set().union(*(set(m) for m in baseline)) if baseline else set()
    method_keys = set().union(*(set(m) for m in method)) if method else set()
    rows: list[Row] = []
    for key in sorted(base_keys & method_keys):
        section = _section(key, prim)
        if section is not None:
            rows.append(Row(section, key, key, _values(baseline, key), _values(method, key)))
    for key in sorted(method_keys - base_keys):
        if not key.startswith(("val/", "train/")):
            continue
        counterpart = _baseline_counterpart(key, base_keys)
        base_vals = _values(baseline, counterpart) if counterpart else []
        rows.append(Row("method", key, counterpart, base_vals, _values(method, key)))
    rows = [r for r in rows if r.base or r.method]
    order = {s: i for i, s in enumerate(SECTIONS)}
    return sorted(rows, key=lambda r: (order[r.section], r.key))


def _fmt(x: float, signed: bool = False) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _flag(row: Row) -> str:
    w = row.within_noise
    return "n/a" if w is None else ("within noise" if w else "**beyond noise**")


SECTION_TITLES = {
    "own": "Own dataset (each head on its own validation set)",
    "cross": "Cross-skeleton AP (a head on another set's images, hidden ground truth)",
    "consistency": "Cross-head consistency (lower is better)",
    "method": "Method's own keys (baseline column: the baseline's plain metric for variants, else none)",
}


def _headline(row: Row) -> bool:
    """Whether a method-section row goes into the Markdown table: ``val/`` keys only; variants of a baseline
    metric when the metric is a headline one, method-only metrics unless they are COCO details."""
    if row.section != "method":
        return True
    if not row.key.startswith("val/"):
        return False
    last = row.key.split("/")[-1]
    return last in HEADLINE_METRICS if row.baseline_key else last not in DETAIL_METRICS


def markdown_report(rows: Sequence[Row], header: Sequence[str], method_name: str) -> str:
    """The comparison as Markdown: ``header`` lines, then one table per section (the ``other`` section and
    non-headline method keys only go to the CSV)."""
    lines = [f"# Comparison: baseline vs {method_name}", "", *header, ""]
    cols = (
        "| key | baseline | "
        + method_name
        + " | diff | spread baseline | spread "
        + method_name
        + " | verdict |"
    )
    for section, title in SECTION_TITLES.items():
        sel = [r for r in rows if r.section == section and _headline(r)]
        if not sel:
            continue
        lines += [f"## {title}", "", cols, "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in sel:
            key = r.key if r.baseline_key in (None, r.key) else f"{r.key} (vs {r.baseline_key})"
            lines.append(
                f"| {key} | {_fmt(r.base_mean)} | {_fmt(r.method_mean)} | {_fmt(r.diff, True)} | "
                f"{_fmt(r.base_spread)} | {_fmt(r.method_spread)} | {_flag(r)} |"
            )
        lines.append("")
    lines.append(
        "diff = method mean − baseline mean; spread = max − min over the seeds of an arm (|seed0 − seed1| for two "
        "seeds); a difference not larger than the larger spread is within the noise floor."
    )
    return "\n".join(lines) + "\n"


def csv_report(rows: Sequence[Row], seeds: Sequence[int] = ()) -> str:
    """Every row, with per-seed values (in the order of the finished runs) for each arm."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "section",
            "key",
            "baseline_key",
            "baseline_mean",
            "method_mean",
            "diff",
            "baseline_spread",
            "method_spread",
            "noise_floor",
            "within_noise",
            "baseline_values",
            "method_values",
        ]
    )
    for r in rows:
        w.writerow(
            [
                r.section,
                r.key,
                r.baseline_key or "",
                *(
                    repr(x)
                    for x in (r.base_mean, r.method_mean, r.diff, r.base_spread, r.method_spread, r.noise)
                ),
                "" if r.within_noise is None else str(r.within_noise).lower(),
                " ".join(repr(v) for v in r.base),
                " ".join(repr(v) for v in r.method),
            ]
        )
    return buf.getvalue()


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
        f"- date: {now}; code: {_git_commit()}",
        f"- stage 0: `{stage0}` (sha256 {file_sha256(stage0)[:12]})",
        f"- {steps} optimiser steps per run ({epochs} epoch{'s' if epochs != 1 else ''} of {steps // epochs} "
        "batches), one validation at the end",
        "",
        *run_lines(results, steps),
    ]
