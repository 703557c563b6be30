"""What a user sees in the terminal: Lightning's log lines once (not twice) and without third-party tips, and a
result table with one row per dataset. Light module (no torch/Lightning import); the console callbacks are in
:mod:`multipose.utils.callbacks`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("multipose")

# Lightning's own INFO lines that say nothing a multipose user needs (advertisements, TPU/HPU availability).
_NOISE = ("💡 Tip", "TPU available", "HPU available", "LOCAL_RANK:", "Loading `train_dataloader` to estimate")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.lstrip().startswith(prefix) for prefix in _NOISE)


def quiet_lightning() -> None:
    """Print every Lightning log line once, through the application's handlers (Hydra's console + file), without
    the advertisements and Lightning-internal deprecation warnings. Call after importing lightning."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        if (
            logging.getLogger().handlers
        ):  # Hydra (or the user) configured logging: drop Lightning's extra handler
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    noise = _DropNoise()
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.seed",
    ):
        logging.getLogger(name).addFilter(noise)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def summary_rows(metrics: Mapping[str, float], primary: Mapping[str, str]) -> list[tuple[str, str, float]]:
    """``(dataset, metric, value)`` for each dataset's primary metric (``primary`` maps dataset -> metric name),
    in the mix's order; datasets without that key are skipped."""
    rows = []
    for dataset, metric in primary.items():
        key = f"val/{dataset}/{metric}"
        if key in metrics:
            rows.append((dataset, metric, float(metrics[key])))
    return rows


def print_summary(metrics: Mapping[str, float], primary: Mapping[str, str], metrics_file: Any = None) -> None:
    """One row per dataset with its primary metric; the full set of metrics is in ``metrics.json``."""
    from rich.console import Console
    from rich.table import Table

    rows = summary_rows(metrics, primary)
    if not rows:
        return
    table = Table(title="validation")
    table.add_column("dataset")
    table.add_column("metric")
    table.add_column("value", justify="right")
    # box-normalised PCK beside OKS AP: it reads the same under every skeleton's sigmas (AIC's and
    # COCO-WholeBody's official sigmas make their AP much stricter than COCO's)
    pck = {d: metrics.get(f"val/{d}/PCK@0.1") for d, m, _ in rows if m != "PCK@0.1"}
    with_pck = any(v is not None for v in pck.values())
    if with_pck:
        table.add_column("PCK@0.1", justify="right")
    for dataset, metric, value in rows:
        extra = [] if not with_pck else ["" if pck.get(dataset) is None else f"{float(pck[dataset]):.4f}"]
        table.add_row(dataset, metric, f"{value:.4f}", *extra)
    if "val/score" in metrics:
        table.add_row("[bold]score[/]", "mean of the above", f"{float(metrics['val/score']):.4f}")
    Console().print(table)
    if metrics_file:
        log.info("all %d metrics: %s", len(metrics), metrics_file)
