"""The saved W&B workspace of a sweep (``scripts/wandb_workspace.py``).

:func:`workspace_spec` is a pure function: from the sweep's group, swept keys, datasets, loss terms and picture
names it returns the workspace as plain data (sections of panels), so what the workspace shows is tested
without W&B or a network. :func:`build_workspace` turns the spec into ``wandb_workspaces`` objects (the
``sweeps`` extra); saving them is the script's one network call. :func:`spec_from_sweep` reads what the spec needs
from a local multirun directory.

Keys in the spec: config values are ``{"config": key}`` (the flat keys :class:`SweepWandbLogger` logs), summary
values ``{"summary": key}`` (the final value; ``best/<key>`` holds the best one), histories ``{"metric": key}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LOSS_TERMS", "build_workspace", "spec_from_sweep", "workspace_spec"]

#: loss terms shown when no local run tells which exist (PoseBH's terms appear once the bridge is on)
DEFAULT_LOSS_TERMS = ("train/loss", *(f"train/posebh/{t}" for t in ("phm", "ppc", "ppd", "css", "cps")))


def _is_log(values: Iterable[Any]) -> bool:
    numbers = []
    for v in values:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            return False
    finite = [x for x in numbers if math.isfinite(x)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= 10


def workspace_spec(
    group: str,
    swept: Mapping[str, Sequence[Any]],
    datasets: Mapping[str, str],
    objective: str = "val/score",
    loss_terms: Sequence[str] = DEFAULT_LOSS_TERMS,
    pictures: Sequence[str] = (),
    name: str | None = None,
    extra_metrics: Sequence[str] = (),
) -> dict[str, Any]:
    """The workspace of the sweep whose runs have W&B group ``group``.

    Args:
        swept: swept config key -> the values it takes (log axes where they span 10x or more).
        datasets: dataset -> its primary validation metric key (``val/syn_coco/AP``).
        objective: the sweep's objective (``optimized_metric``).
        loss_terms: training loss keys to plot over steps (``train/loss``, ``train/posebh/phm``, ...).
        pictures: image keys as logged (``pictures/val_syn_coco``, ``pictures/posebh_similarity``, ...).
        extra_metrics: further validation keys to plot over steps (bridge variants such as
            ``val/syn_coco/proto/AP``, bridge monitors such as prototype usage).
    """
    keys = list(swept)
    log = {k: _is_log(v) for k, v in swept.items()}
    metrics = [objective, *(m for m in datasets.values() if m != objective)]
    parallel = {
        "type": "parallel_coordinates",
        "title": f"{', '.join(keys)} → {objective}",
        "columns": [{"config": k, "log": log[k]} for k in keys]
        + [{"summary": m, "log": False} for m in metrics],
    }
    scatter_objective = [
        {
            "type": "scatter",
            "title": f"{k} vs {objective}",
            "x": {"config": k},
            "y": {"summary": objective},
            "log_x": log[k],
        }
        for k in keys
    ]
    scatter_datasets = [
        {"type": "scatter", "title": f"{k} vs {m}", "x": {"config": k}, "y": {"summary": m}, "log_x": log[k]}
        for m in metrics[1:]
        for k in keys
    ]
    curves = [{"type": "line", "title": m, "y": [{"metric": m}], "log_y": False} for m in metrics]
    losses = [{"type": "line", "title": t, "y": [{"metric": t}], "log_y": True} for t in loss_terms]
    bridge = [{"type": "line", "title": m, "y": [{"metric": m}], "log_y": False} for m in extra_metrics]
    sections = [
        {
            "name": f"Sweep: {', '.join(keys) or 'runs'} vs {objective}",
            "panels": [parallel, *scatter_objective],
        },
        {"name": "Per-dataset metrics vs swept keys", "panels": scatter_datasets},
        {"name": "Validation curves per dataset", "panels": curves},
        {"name": "Loss terms", "panels": losses},
        {"name": "Bridge metrics", "panels": bridge},
    ]
    if pictures:
        sections.append(
            {
                "name": "Pictures",
                "panels": [{"type": "media", "title": p.split("/", 1)[-1], "keys": [p]} for p in pictures],
            }
        )
    return {
        "name": name or f"sweep {group}",
        "group": group,
        "sections": [s for s in sections if s["panels"]],
    }


def spec_from_sweep(sweep_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """:func:`workspace_spec` of a local multirun directory: swept keys and their values, datasets, the loss terms
    of the CSV logs, the picture names of the jobs' ``pictures/``, and the group its runs were logged under."""
    import yaml

    from multipose.bridges.base import BRIDGES
    from multipose.utils.sweep import read_sweep, sweep_group

    sweep = read_sweep(sweep_dir)
    swept = {k: [j.overrides.get(k) for j in sweep.jobs if k in j.overrides] for k in sweep.swept}
    terms = sorted({k for j in sweep.jobs for k in j.history if k.startswith("train/")}) or list(
        DEFAULT_LOSS_TERMS
    )
    pictures = sorted({f"pictures/{p.stem}" for j in sweep.jobs for p in (j.dir / "pictures").glob("*.png")})
    # bridge variants (val/<ds>/proto/AP) and a bridge's own monitors (val/<bridge>/...: prototype usage, ...)
    primaries = {key.rsplit("/", 1)[-1] for key in sweep.datasets.values()}
    extra = sorted(
        {
            k
            for j in sweep.jobs
            for k in j.metrics
            if k.startswith("val/")
            and (("/proto/" in k and k.rsplit("/", 1)[-1] in primaries) or k.split("/")[1] in BRIDGES)
        }
    )
    task_name = ""
    multirun = Path(sweep_dir) / "multirun.yaml"
    if multirun.is_file():
        task_name = str((yaml.safe_load(multirun.read_text()) or {}).get("task_name") or "")
    return workspace_spec(
        sweep_group(sweep_dir, task_name),
        swept,
        sweep.datasets,
        sweep.objective,
        terms,
        pictures,
        name,
        extra,
    )


def _metric(ref: Mapping[str, str], wr: Any) -> Any:
    if "config" in ref:
        return wr.Config(ref["config"])
    if "summary" in ref:
        return wr.SummaryMetric(ref["summary"])
    return wr.Metric(ref["metric"])


def _panel(panel: Mapping[str, Any], wr: Any) -> Any:
    kind = panel["type"]
    if kind == "parallel_coordinates":
        columns = [
            wr.ParallelCoordinatesPlotColumn(metric=_metric(c, wr), log=c.get("log") or None)
            for c in panel["columns"]
        ]
        return wr.ParallelCoordinatesPlot(title=panel["title"], columns=columns)
    if kind == "scatter":
        return wr.ScatterPlot(
            title=panel["title"],
            x=_metric(panel["x"], wr),
            y=_metric(panel["y"], wr),
            log_x=panel.get("log_x") or None,
        )
    if kind == "line":
        return wr.LinePlot(
            title=panel["title"], y=[_metric(m, wr) for m in panel["y"]], log_y=panel.get("log_y") or None
        )
    if kind == "media":
        return wr.MediaBrowser(title=panel["title"], media_keys=list(panel["keys"]))
    raise ValueError(f"unknown panel type {kind!r} in the workspace spec")


def build_workspace(spec: Mapping[str, Any], entity: str, project: str) -> Any:
    """``wandb_workspaces.workspaces.Workspace`` of ``spec`` (not saved), runs filtered to the spec's group."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the W&B workspace API is not installed: pip install -e '.[sweeps]' (wandb-workspaces)"
        ) from err
    from wandb_workspaces import expr

    sections = [
        ws.Section(name=s["name"], panels=[_panel(p, wr) for p in s["panels"]], is_open=True)
        for s in spec["sections"]
    ]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=spec["name"],
        sections=sections,
        runset_settings=ws.RunsetSettings(filters=[expr.Metric("Group") == spec["group"]]),
    )
