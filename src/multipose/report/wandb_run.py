"""W&B logging for sweeps (``conf/logger/wandb.yaml``): :class:`SweepWandbLogger` is Lightning's ``WandbLogger``
with three changes that W&B's sweep panels need.

* **Grouped by sweep.** In a Hydra multirun every job's run gets ``group = <task_name>_<multirun dir name>``
  (:func:`sweep_group`) and ``name = "<job num>: <swept key=value ...>"``; a single run keeps the configured
  group (``${task_name}``). ``scripts/wandb_workspace.py`` filters its workspace by the same group.
* **Config logged flat.** ``loss.posebh.alpha``-style dotted keys (:func:`flatten`), so the parallel-coordinates
  and scatter panels can use any config value as an axis; plus ``sweep.dir`` / ``sweep.job`` in a multirun.
* **Best values in the summary.** W&B's summary holds the last logged value of each metric (the final
  validation); this logger adds ``best/<key>`` for every ``val/...`` metric: the best value over the run's
  validations (max, or min for NME/EPE/CHD/losses, :func:`multipose.utils.sweep.lower_is_better`).

Images (``PosePictures``: learning curves, validation crops per dataset, every head on one crop, bridge figures)
reach W&B through ``log_image`` as before (``pictures/<name>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from multipose.utils.sweep import lower_is_better, sweep_group

__all__ = ["SweepWandbLogger", "flatten", "multirun_job"]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"a.b.c": value}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def multirun_job() -> dict[str, Any] | None:
    """``{"dir", "num", "overrides"}`` of the running multirun job, ``None`` outside a multirun."""
    from hydra.core.hydra_config import HydraConfig

    from multipose.utils.sweep import in_multirun

    if not in_multirun():
        return None
    hc = HydraConfig.get()
    return {
        "dir": str(hc.sweep.dir),
        "num": int(hc.job.num),
        "overrides": [str(o) for o in hc.overrides.task],
    }


class SweepWandbLogger(WandbLogger):
    """``WandbLogger`` grouped by sweep, with a flat config and ``best/<key>`` summaries (see the module doc).
    ``group`` / ``name`` given explicitly win; ``task_name`` names the sweep group (and is the group of a single
    run)."""

    def __init__(
        self,
        *args: Any,
        task_name: str = "",
        group: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ):
        job = multirun_job()
        self._sweep: dict[str, Any] = {}
        if job is not None:
            from multipose.utils.sweep import swept_overrides

            sweep_dir = Path(job["dir"])
            swept = swept_overrides(sweep_dir, job["overrides"])
            group = group or sweep_group(sweep_dir, task_name)
            name = name or f"{job['num']}: " + (" ".join(swept) or "defaults")
            self._sweep = {"sweep.dir": str(sweep_dir), "sweep.job": job["num"], "sweep.group": group}
        super().__init__(*args, group=group or task_name or None, name=name, **kwargs)
        self._best: dict[str, float] = {}

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if not isinstance(params, Mapping):
            params = vars(params)
        flat = flatten(dict(params))
        flat.update(self._sweep)
        self.experiment.config.update(flat, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        best = {}
        for key, value in metrics.items():
            if not str(key).startswith("val/"):
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            old = self._best.get(key)
            better = old is None or (value < old if lower_is_better(key) else value > old)
            if better:
                self._best[key] = value
                best[f"best/{key}"] = value
        if best:
            self.experiment.summary.update(best)
