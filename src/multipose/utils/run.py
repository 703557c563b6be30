"""Run bookkeeping for the Hydra entry points: config printing/saving, loggers and callbacks from config,
the metrics file, and a wrapper that always closes loggers (W&B included)."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("multipose")

CONFIG_TREE_ORDER = (
    "data",
    "backbone",
    "head",
    "loss",
    "optim",
    "evaluation",
    "trainer",
    "callbacks",
    "logger",
    "paths",
)


def _yaml(value: Any) -> str:
    try:
        return OmegaConf.to_yaml(value, resolve=True)
    except (
        Exception
    ):  # an interpolation that needs a running Hydra app (tests, notebooks): show it unresolved
        return OmegaConf.to_yaml(value, resolve=False)


def config_tree(cfg: DictConfig):
    """The full composed config, resolved, as a rich tree (one branch per group)."""
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    keys = [k for k in CONFIG_TREE_ORDER if k in cfg] + [k for k in cfg if k not in CONFIG_TREE_ORDER]
    for key in keys:
        branch = tree.add(str(key), guide_style="dim")
        value = cfg._get_node(key)
        text = (
            _yaml(value)
            if isinstance(value, DictConfig)
            else str(_yaml(OmegaConf.create({"v": value})).strip()[3:])
        )
        branch.add(rich.syntax.Syntax(text, "yaml"))
    return tree


def config_choices(cfg: DictConfig) -> dict[str, str]:
    """``group -> option`` of the running Hydra job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = {g: str(o) for g, o in HydraConfig.get().runtime.choices.items() if o is not None}
    order = ["experiment", *CONFIG_TREE_ORDER]
    return {
        g: choices[g]
        for g in sorted(choices, key=lambda g: order.index(g) if g in order else len(order))
        if not g.startswith("hydra") and g != "paths"
    }


def print_config_tree(
    cfg: DictConfig, save_dir: str | Path | None = None, overrides: list[str] | None = None
) -> None:
    """Print the config collapsed to the chosen groups and the command-line overrides; save the full resolved
    tree as ``config_tree.log`` (the composed config itself is in ``.hydra/config.yaml``)."""
    import rich

    choices = {} if cfg.get("resume") else config_choices(cfg)  # a resumed run's groups are in its overrides
    if choices:
        log.info("config: %s", " ".join(f"{g}={o}" for g, o in choices.items()))
    if overrides:
        log.info("overrides: %s", " ".join(overrides))
    if save_dir is not None:
        path = Path(save_dir) / "config_tree.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            rich.print(config_tree(cfg), file=f)
        log.info("full config: %s", path)
    else:
        rich.print(config_tree(cfg))


def instantiate_group(cfg: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a callbacks/logger group (``None`` -> empty list)."""
    import hydra

    objects: list[Any] = []
    if not cfg:
        return objects
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"`{what}` config must be a mapping of named entries, got {type(cfg).__name__}")
    for name, conf in cfg.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            log.debug("Instantiating %s <%s> (%s)", what, conf._target_, name)
            objects.append(hydra.utils.instantiate(conf))
    return objects


def instantiate_callbacks(cfg: DictConfig | None, trainer_cfg: DictConfig | None = None) -> list[Any]:
    """The callbacks group, made to fit the trainer: when the trainer turns the progress bar or the model summary
    off (``trainer.enable_progress_bar=false``, ``enable_model_summary=false``, as the smoke experiment does),
    the configured progress-bar / summary callbacks are left out instead of Lightning refusing to start. The
    trainer setting wins, so any experiment composes with any callbacks option."""
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar

    from multipose.utils.callbacks import ModelSize

    callbacks = instantiate_group(cfg, "callback")
    trainer_cfg = trainer_cfg or {}
    drop: tuple[type, ...] = ()
    if trainer_cfg.get("enable_progress_bar", True) is False:
        drop += (ProgressBar,)
    if trainer_cfg.get("enable_model_summary", True) is False:
        drop += (ModelSummary, ModelSize)
    kept = [cb for cb in callbacks if not isinstance(cb, drop)]
    for cb in callbacks:
        if isinstance(cb, drop):
            log.debug("trainer settings turn %s off", type(cb).__name__)
    return kept


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON through a temporary file in the same folder and rename it, so a crash never leaves a
    half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_mode() -> int:
    """Permission bits of a new file under the current umask (``0o666 & ~umask``); ``mkstemp`` alone gives 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text through a temporary file in the same folder and rename it (mode from the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain-float copy of a metrics mapping (tensors -> floats), keys sorted."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value) if math.isfinite(float(value)) else float("nan")
    return dict(sorted(out.items()))


def write_metrics(
    output_dir: str | Path, metrics: Mapping[str, Any], notes: Mapping[str, Any] | None = None
) -> Path:
    """Write ``metrics.json`` (flat ``<split>/<dataset>/<metric>`` keys, float values) into the run directory.
    ``notes`` are added as they are (JSON values under ``data/...`` keys, e.g. the images left out under
    ``data.on_bad_image=skip``: ``data/skipped_images`` (count) and ``data/skipped_image_files`` (a list))."""
    out: dict[str, Any] = dict(flat_metrics(metrics))
    out.update(dict(notes or {}))
    return write_json_atomic(Path(output_dir) / "metrics.json", dict(sorted(out.items())))


def task_wrapper(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a task and always close the experiment trackers, even when it fails (a crashed W&B run is
    marked failed instead of hanging)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        finally:
            try:
                import sys

                if "wandb" in sys.modules:
                    import wandb

                    if wandb.run is not None:
                        wandb.finish()
            except Exception:  # pragma: no cover - never mask the task's own error
                log.warning("Could not close the W&B run cleanly", exc_info=True)

    return wrapped
