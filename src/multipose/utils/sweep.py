"""Hydra multirun bookkeeping: a sweep that survives a failing job, and the summary table of a sweep.

* :func:`run_job` runs one job of ``python -m multipose.train -m ...``: in a multirun an exception is recorded
  in the job's run directory (``job_failed.json``) and the job returns no objective (``None``, which the Optuna
  sweeper records as a failed trial; a NaN would make optuna 2.x's ``tell`` raise and end the study), so Hydra's
  launcher goes on with the other jobs; a single run raises as before (and exits non-zero).
* :func:`read_sweep` reads a multirun directory: each job's overrides (``.hydra/overrides.yaml``), its status,
  final metrics (``metrics.json``) and the validation history of its CSV log (for the best values).
* :func:`write_summary` writes ``sweep_summary.csv`` and ``sweep_summary.md`` (swept keys -> final and best
  metrics, failed jobs marked) into the multirun directory; :class:`multipose.report.sweep_callback.SweepSummary` is the Hydra callback
  (``hydra.callbacks`` in ``conf/hydra/default.yaml``) that does it at the end of every multirun, and
  ``python -m multipose.utils.sweep <multirun dir>`` does it by hand (e.g. for a sweep that was killed).

Light module: no torch / Lightning import.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import signal
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from multipose.utils.run import write_json_atomic, write_text_atomic

__all__ = [
    "FAILURE_FILE",
    "Job",
    "Sweep",
    "in_multirun",
    "lower_is_better",
    "read_sweep",
    "record_failure",
    "run_job",
    "stop_signal_of",
    "summary_table",
    "sweep_group",
    "swept_overrides",
    "write_summary",
]

log = logging.getLogger("multipose.sweep")

#: written into a job's run directory when the job fails inside a multirun
FAILURE_FILE = "job_failed.json"
SUMMARY_CSV = "sweep_summary.csv"
SUMMARY_MD = "sweep_summary.md"
#: metric names (last path part) where a smaller value is better; everything else (AP, PCK, AUC, score) is
#: "higher is better"
_LOWER = ("NME", "EPE", "CHD", "CHD_p90", "loss")


def lower_is_better(key: str) -> bool:
    """``True`` for metrics where smaller is better (``.../NME``, ``.../EPE``, ``.../CHD``, losses)."""
    return key.rsplit("/", 1)[-1] in _LOWER


# ---------------------------------------------------------------------------------------------- failing jobs
def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m`` / ``hydra.mode=MULTIRUN``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(output_dir: str | Path, err: BaseException) -> Path:
    """Write ``<output_dir>/job_failed.json`` (error type, message, traceback, time), atomically."""
    record = {
        "status": "failed",
        "error": type(err).__name__,
        "message": str(err),
        "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return write_json_atomic(Path(output_dir) / FAILURE_FILE, record)


#: how PyTorch reports a DataLoader worker that a stop signal reached (the signal went to the whole process group)
_WORKER_STOPPED = {
    "killed by signal: Terminated": signal.SIGTERM,
    "killed by signal: Interrupt": signal.SIGINT,
}


def stop_signal_of(err: BaseException) -> int | None:
    """The stop signal (SIGINT / SIGTERM) behind ``err`` or the exceptions it was raised from, else ``None``: a
    Ctrl-C or ``kill -TERM -<group>`` reaches the DataLoader workers too, and the main process then fails with
    PyTorch's "DataLoader worker ... is killed by signal" error instead of stopping cleanly."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt):
            return int(signal.SIGINT)
        for text, signum in _WORKER_STOPPED.items():
            if text in str(current):
                return int(signum)
        current = current.__cause__ or current.__context__
    return None


def run_job(task: Callable[[], Any], output_dir: str | Path, multirun: bool | None = None) -> Any:
    """Run one job. In a multirun (``multirun=None``: ask Hydra) an exception is logged, recorded in
    ``<output_dir>/job_failed.json`` and ``None`` is returned, so the launcher runs the remaining jobs (Hydra's
    basic launcher stops a sweep at the first exception). A stop signal (Ctrl-C, SIGTERM: ``RunInterrupted``,
    ``KeyboardInterrupt``, ``SystemExit``) still stops the whole sweep. Outside a multirun the exception
    propagates unchanged, so a single run exits non-zero."""
    from multipose.utils.cli import RunInterrupted

    if not (in_multirun() if multirun is None else multirun):
        return task()
    try:
        return task()
    except RunInterrupted:
        raise
    except Exception as err:
        signum = stop_signal_of(err)
        if signum is not None:  # the user stopped the sweep (Ctrl-C, SIGTERM to the process group, scancel)
            raise RunInterrupted(signum, None) from err
        path = record_failure(output_dir, err)
        log.error(
            "job failed: %s: %s (traceback in %s); the sweep goes on with the other jobs",
            type(err).__name__,
            err,
            path,
            exc_info=True,
        )
        return None


# ---------------------------------------------------------------------------------------------- reading a sweep
@dataclass
class Job:
    """One job of a multirun directory."""

    num: int
    dir: Path
    overrides: dict[str, str]  # key (without +/++) -> value, as given on the command line / by the sweeper
    status: str  # "ok" | "failed" | "missing" (neither metrics.json nor a failure record: killed or running)
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # final values (metrics.json)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(step, value)]
    primary: dict[str, str] = field(default_factory=dict)  # dataset -> primary metric key (val/<ds>/<m>)

    def final(self, key: str) -> float:
        value = self.metrics.get(key)
        if value is None and self.history.get(key):
            value = self.history[key][-1][1]
        return float("nan") if value is None else float(value)

    def best(self, key: str) -> float:
        """Best value of ``key`` over every validation of the run (CSV log) and the final one."""
        values = [v for _, v in self.history.get(key, [])]
        if key in self.metrics:
            values.append(float(self.metrics[key]))
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return float("nan")
        return min(values) if lower_is_better(key) else max(values)


@dataclass
class Sweep:
    """A multirun directory: its jobs in job order, the swept keys and the objective."""

    dir: Path
    jobs: list[Job]
    swept: list[str]
    objective: str
    datasets: dict[str, str]  # dataset -> primary metric key, in mix order (union over the jobs)

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "ok"]

    def best_job(self) -> Job | None:
        """The finished job with the best final objective (``None`` when none has a finite one)."""
        scored = [j for j in self.jobs if j.status == "ok" and math.isfinite(j.final(self.objective))]
        if not scored:
            return None
        pick = min if lower_is_better(self.objective) else max
        return pick(scored, key=lambda j: j.final(self.objective))


def _parse_override(text: str) -> tuple[str, str] | None:
    text = str(text)
    if text.startswith("~") or "=" not in text:
        return None
    key, value = text.split("=", 1)
    return key.lstrip("+"), value


def _read_yaml(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


def _job_num(job_dir: Path) -> int | None:
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        try:
            num = (_read_yaml(hydra_yaml) or {}).get("hydra", {}).get("job", {}).get("num")
            if num is not None:
                return int(num)
        except (OSError, yaml.YAMLError, ValueError, TypeError, AttributeError):
            pass
    return int(job_dir.name) if job_dir.name.isdigit() else None


def _primary_metrics(job_dir: Path, metrics: Mapping[str, float]) -> dict[str, str]:
    """``dataset -> val/<ds>/<primary>`` from the job's composed config (``data.datasets.*.metric``), else
    guessed from the metric names."""
    from multipose.evaluation.mix import PRIMARY_METRIC

    out: dict[str, str] = {}
    config = job_dir / ".hydra" / "config.yaml"
    if config.is_file():
        try:
            datasets = ((_read_yaml(config) or {}).get("data") or {}).get("datasets") or {}
            for name, entry in datasets.items():
                metric = PRIMARY_METRIC.get(str((entry or {}).get("metric", "coco")), "AP")
                out[str(name)] = f"val/{name}/{metric}"
        except (OSError, yaml.YAMLError, AttributeError):
            out = {}
    if out:
        return out
    for key in metrics:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[2] in PRIMARY_METRIC.values():
            out.setdefault(parts[1], key)
    return out


def read_history(job_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``key -> [(step, value)]`` of every logged value in the job's CSV log (``csv/version_*/metrics.csv``, the
    newest version); empty without a CSV logger."""
    files = sorted(
        (job_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])
    )
    if not files:
        return {}
    out: dict[str, list[tuple[int, float]]] = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    out.setdefault(key, []).append((step, float(text)))
                except ValueError:
                    continue
    return out


def read_job(job_dir: Path, num: int) -> Job:
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides: dict[str, str] = {}
    if overrides_file.is_file():
        for item in _read_yaml(overrides_file) or []:
            parsed = _parse_override(item)
            if parsed:
                overrides[parsed[0]] = parsed[1]
    metrics: dict[str, float] = {}
    if (job_dir / "metrics.json").is_file():
        raw = json.loads((job_dir / "metrics.json").read_text())
        metrics = {
            k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    status, error = ("ok" if (job_dir / "metrics.json").is_file() else "missing"), ""
    if (job_dir / FAILURE_FILE).is_file():
        record = json.loads((job_dir / FAILURE_FILE).read_text())
        status, error = "failed", f"{record.get('error', 'error')}: {record.get('message', '')}".strip()
    return Job(
        num=num,
        dir=job_dir,
        overrides=overrides,
        status=status,
        error=error,
        metrics=metrics,
        history=read_history(job_dir),
        primary=_primary_metrics(job_dir, metrics),
    )


def _sweep_params(sweep_dir: Path) -> tuple[list[str], str]:
    """Keys the sweeper was asked to vary (``hydra.sweeper.params`` and the command line's ``a=x,y`` /
    range / choice overrides of ``multirun.yaml``) and ``optimized_metric``."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return [], "val/score"
    cfg = _read_yaml(path) or {}
    hydra_cfg = cfg.get("hydra") or {}
    keys: list[str] = [str(k).lstrip("+") for k in ((hydra_cfg.get("sweeper") or {}).get("params") or {})]
    for item in (hydra_cfg.get("overrides") or {}).get("task") or []:
        parsed = _parse_override(item)
        if parsed and (
            "," in parsed[1] or parsed[1].startswith(("range(", "choice(", "interval(", "tag(", "glob("))
        ):
            keys.append(parsed[0])
    return list(dict.fromkeys(keys)), str(cfg.get("optimized_metric") or "val/score")


def sweep_group(sweep_dir: str | Path, task_name: str = "") -> str:
    """The W&B group of a sweep's runs: ``<task_name>_<multirun dir name>`` (the dir name alone without a task
    name). ``scripts/wandb_workspace.py`` filters by it."""
    name = Path(sweep_dir).name
    return f"{task_name}_{name}" if task_name else name


def swept_overrides(sweep_dir: str | Path, overrides: Iterable[str]) -> list[str]:
    """The ``key=value`` items of a job's ``overrides`` whose key the sweep varies (from ``multirun.yaml``)."""
    keys, _ = _sweep_params(Path(sweep_dir))
    out = []
    for item in overrides:
        parsed = _parse_override(item)
        if parsed and parsed[0] in keys:
            out.append(f"{parsed[0]}={parsed[1]}")
    return out


def read_sweep(sweep_dir: str | Path) -> Sweep:
    """Read a multirun directory (``logs/<task>/multiruns/<time>``). Raises ``FileNotFoundError`` naming the
    folder when it holds no job."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such multirun directory")
    job_dirs = sorted(
        {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml") if p.parent.parent != sweep_dir}
    )
    if not job_dirs:
        raise FileNotFoundError(
            f"{sweep_dir}: no job directories (folders with .hydra/overrides.yaml); give the multirun directory "
            "that `python -m multipose.train -m ...` printed (logs/<task_name>/multiruns/<time>)"
        )
    jobs = []
    for i, job_dir in enumerate(job_dirs):
        num = _job_num(job_dir)
        jobs.append(read_job(job_dir, i if num is None else num))
    jobs.sort(key=lambda j: j.num)
    params, objective = _sweep_params(sweep_dir)
    varying = [
        k
        for k in dict.fromkeys(k for j in jobs for k in j.overrides)
        if len({j.overrides.get(k) for j in jobs}) > 1
    ]
    swept = list(dict.fromkeys([*params, *varying]))
    datasets: dict[str, str] = {}
    for job in jobs:
        for name, key in job.primary.items():
            datasets.setdefault(name, key)
    return Sweep(dir=sweep_dir, jobs=jobs, swept=swept, objective=objective, datasets=datasets)


# ---------------------------------------------------------------------------------------------- the summary
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"
    return str(value)


def _short_value(text: str) -> str:
    """A swept value as the table shows it: long floats (Optuna's samples) to 4 significant digits."""
    try:
        value = float(text)
    except ValueError:
        return text.replace("|", "\\|")
    return f"{value:.4g}" if len(text) > 8 else text


def summary_table(sweep: Sweep) -> tuple[list[str], list[list[Any]]]:
    """``(header, rows)``: one row per job with its swept values, status, the objective (final and best over
    the run's validations) and each dataset's primary metric (final and best)."""
    obj = sweep.objective
    metric_keys = [k for k in sweep.datasets.values() if k != obj]
    header = ["job", "status", *sweep.swept, obj, f"best {obj}"]
    for key in metric_keys:
        header += [key, f"best {key}"]
    header.append("error")
    rows = []
    for job in sweep.jobs:
        row: list[Any] = [job.num, job.status, *(job.overrides.get(k, "") for k in sweep.swept)]
        row += [job.final(obj), job.best(obj)]
        for key in metric_keys:
            row += [job.final(key), job.best(key)]
        row.append(job.error.splitlines()[0][:200] if job.error else "")
        rows.append(row)
    return header, rows


def summary_markdown(sweep: Sweep) -> str:
    header, rows = summary_table(sweep)
    best = sweep.best_job()
    obj_col = header.index(sweep.objective)
    lines = [
        f"# Sweep {sweep.dir.name}: {len(sweep.jobs)} jobs, {len(sweep.failed)} not finished",
        "",
        f"Objective `{sweep.objective}` (final value; `best` = best over the run's validations)."
        + (f" Best job: {best.num} ({_fmt(best.final(sweep.objective))})." if best else ""),
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if isinstance(v, float) else "---" for v in rows[0]) + " |",
    ]
    n_swept = len(sweep.swept)
    for job, row in zip(sweep.jobs, rows):
        cells = [_fmt(v).replace("|", "\\|") for v in row]
        cells[2 : 2 + n_swept] = [_short_value(str(v)) for v in row[2 : 2 + n_swept]]
        if best is not None and job is best:
            cells[obj_col] = f"**{cells[obj_col]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_csv(sweep: Sweep) -> str:
    header, rows = summary_table(sweep)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*header, "run_dir"])
    for job, row in zip(sweep.jobs, rows):
        writer.writerow(
            [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in row] + [str(job.dir)]
        )
    return buf.getvalue()


def write_summary(sweep_dir: str | Path) -> tuple[Sweep, Path, Path]:
    """Write ``sweep_summary.csv`` and ``sweep_summary.md`` into the multirun directory (atomically)."""
    sweep = read_sweep(sweep_dir)
    csv_path = write_text_atomic(sweep.dir / SUMMARY_CSV, summary_csv(sweep))
    md_path = write_text_atomic(sweep.dir / SUMMARY_MD, summary_markdown(sweep))
    return sweep, csv_path, md_path


# ---------------------------------------------------------------------------------------------- Hydra callback
def check_swept_keys(config: Any, keys: Iterable[str]) -> None:
    """A swept ``loss.<bridge>.*`` key needs its bridge: fail before the first job with the fix."""
    from multipose.bridges.base import BRIDGES
    from multipose.config_validation import ConfigError

    bridges = config.get("bridge") or {}
    for key in keys:
        parts = str(key).lstrip("+").split(".")
        if len(parts) >= 3 and parts[0] == "loss" and parts[1] in BRIDGES and parts[1] not in bridges:
            raise ConfigError(
                f"the sweep varies {key}, but the {parts[1]} bridge is off: add +bridge={parts[1]} "
                f"(or an experiment that turns it on) to the command line"
            )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m multipose.utils.sweep",
        description="Write sweep_summary.csv/.md of a multirun directory and print the table.",
    )
    parser.add_argument("sweep_dir", help="multirun directory, logs/<task_name>/multiruns/<time>")
    args = parser.parse_args(argv)
    try:
        sweep, csv_path, md_path = write_summary(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"Error: {err}")
        return 2
    print(summary_markdown(sweep))
    print(f"written: {md_path}, {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
