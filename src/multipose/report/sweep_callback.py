"""The Hydra callback of every multirun (``hydra.callbacks.sweep_summary`` in ``conf/hydra/default.yaml``): it
checks the swept keys before the first job and writes the sweep summary (:mod:`multipose.utils.sweep`) and the
offline HTML report (:mod:`multipose.report`) after the last. It lives here, above both, so that the sweep
bookkeeping does not import the report that reads it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from multipose.report import write_report
from multipose.utils.run import write_text_atomic
from multipose.utils.sweep import _parse_override, check_swept_keys, summary_markdown, write_summary

__all__ = ["SweepSummary"]

log = logging.getLogger("multipose.sweep")


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks.sweep_summary``): before a multirun, checks that swept bridge loss
    weights have their bridge; after it, writes and prints the sweep summary and (``report: true``) the
    offline HTML report ``report.html``. Never fails the sweep at its end: a problem is logged."""

    def __init__(self, report: bool = True) -> None:
        self.report = bool(report)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra") or {}
        keys = [str(k) for k in ((hydra_cfg.get("sweeper") or {}).get("params") or {})]
        keys += [
            p[0] for p in map(_parse_override, (hydra_cfg.get("overrides") or {}).get("task") or []) if p
        ]
        check_swept_keys(config, keys)
        # the basic sweeper saves the multirun config; others (Optuna) do not: read_sweep needs its sweeper params
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not (sweep_dir / "multirun.yaml").is_file():
            from omegaconf import OmegaConf

            sweep_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(config))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            sweep, csv_path, md_path = write_summary(sweep_dir)
        except Exception:  # noqa: BLE001 - the jobs' own results are already on disk
            log.exception("could not write the sweep summary of %s", sweep_dir)
            return
        print(summary_markdown(sweep), flush=True)
        log.info("sweep summary: %s, %s", md_path, csv_path)
        if sweep.failed:
            log.warning(
                "%d of %d jobs did not finish: %s (see job_failed.json in their run directories)",
                len(sweep.failed),
                len(sweep.jobs),
                ", ".join(str(j.num) for j in sweep.failed),
            )
        if self.report:
            try:
                log.info("sweep report: %s", write_report(sweep_dir))
            except Exception:  # noqa: BLE001
                log.exception("could not write the HTML report of %s", sweep_dir)
