"""Restore a run's own config from its run directory: ``train resume=<run dir>`` and ``eval run=<run dir>``.

A run directory (``logs/<task>/runs/<timestamp>/``) holds ``.hydra/config.yaml`` (the composed config),
``.hydra/overrides.yaml`` (the command-line overrides that produced it) and ``checkpoints/last.ckpt``.
Resuming recomposes the config from the saved overrides with the new command line on top (a key given again
replaces the saved value), so group choices such as ``+experiment=smoke`` or ``data=full_mix`` come back too,
and prints what differs from the saved config.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from multipose.config_validation import ConfigError

# keys that describe where and when a run happens, not what it computes: left out of config diffs
_VOLATILE = ("paths.output_dir", "paths.work_dir", "resume", "run", "ckpt_path")


def hydra_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ".hydra"


def check_run_dir(run_dir: str | Path, option: str) -> Path:
    """The run directory as a Path, or a :class:`ConfigError` saying what is missing."""
    path = Path(str(run_dir)).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        raise ConfigError(
            f"{option}={path} is a checkpoint file; give the run directory (the folder that holds .hydra/ and "
            f"checkpoints/), e.g. {option}={path.parent.parent}, or pass the file as ckpt_path=..."
        )
    if not path.is_dir():
        raise ConfigError(f"{option}={path}: no such run directory; runs are under logs/<task_name>/runs/")
    if not (hydra_dir(path) / "config.yaml").is_file():
        raise ConfigError(
            f"{option}={path} has no .hydra/config.yaml: not a multipose run directory (one holds .hydra/, "
            "checkpoints/ and metrics.json)"
        )
    return path


def last_checkpoint(run_dir: Path, option: str) -> Path:
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise ConfigError(
            f"{option}={run_dir} has no checkpoints/last.ckpt: the run stopped before its first checkpoint "
            "(written every epoch and every callbacks.checkpoint.every_n_steps steps); start it again instead"
        )
    return ckpt


def saved_overrides(run_dir: Path) -> list[str]:
    path = hydra_dir(run_dir) / "overrides.yaml"
    if not path.is_file():
        return []
    overrides = OmegaConf.load(path)
    if not isinstance(overrides, ListConfig):
        raise ConfigError(f"{path}: expected a list of overrides, got {type(overrides).__name__}")
    return [str(o) for o in overrides]


def saved_config(run_dir: Path) -> DictConfig:
    cfg = OmegaConf.load(hydra_dir(run_dir) / "config.yaml")
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{hydra_dir(run_dir) / 'config.yaml'}: not a config mapping")
    return cfg


def override_key(override: str) -> str:
    """The key or group an override sets: ``+experiment=smoke`` -> ``experiment``, ``~a.b`` -> ``a.b``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(override)
    return parsed.key_or_group


def merge_overrides(saved: Iterable[str], new: Iterable[str], drop: Iterable[str] = ()) -> list[str]:
    """Saved overrides with the new ones on top: a key or group given again replaces the saved entry; keys in
    ``drop`` are left out of both."""
    drop = set(drop)
    new = [o for o in new if override_key(o) not in drop]
    new_keys = {override_key(o) for o in new}
    kept = [o for o in saved if override_key(o) not in new_keys and override_key(o) not in drop]
    return kept + new


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{...}" if value else "{}"
    return str(value)


def _diff(a: Any, b: Any, key: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{key}.{k}" if key else str(k)
            if k not in b:
                out.append(f"{sub}: {_short(a[k])} -> <removed>")
            elif k not in a:
                out.append(f"{sub}: <absent> -> {_short(b[k])}")
            else:
                _diff(a[k], b[k], sub, out)
    elif a != b:
        out.append(f"{key}: {_short(a)} -> {_short(b)}")


def config_diff(before: DictConfig, after: DictConfig, ignore: Iterable[str] = _VOLATILE) -> list[str]:
    """``key: old -> new`` lines (unresolved values, ``${...}`` kept) for every value that differs; a subtree
    present on one side only is one line."""
    ignore = tuple(ignore)
    lines: list[str] = []
    _diff(
        OmegaConf.to_container(before, resolve=False), OmegaConf.to_container(after, resolve=False), "", lines
    )
    return [
        line for line in lines if not any(line.split(":")[0] == i or line.startswith(i + ".") for i in ignore)
    ]


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose like the CLI; inside a running Hydra app its own config search path is reused."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        from hydra import compose as hydra_compose

        return hydra_compose(config_name=config_name, overrides=overrides)
    from multipose.utils.compose import compose_config

    return compose_config(config_name, overrides)


def restore_train_config(
    run_dir: str | Path, command_line: list[str]
) -> tuple[DictConfig, list[str], list[str]]:
    """Config of ``train resume=<run dir>``: the run's saved overrides, then ``command_line`` on top, with
    ``ckpt_path`` set to the run's ``last.ckpt``. Returns ``(config, effective overrides, diff lines)``."""
    run = check_run_dir(run_dir, "resume")
    ckpt = last_checkpoint(run, "resume")
    overrides = merge_overrides(saved_overrides(run), command_line, drop=("resume", "ckpt_path"))
    overrides += [f"resume={run.resolve()}", f"ckpt_path={ckpt.resolve()}"]  # kept for the record
    cfg = compose("train", overrides)
    return cfg, overrides, config_diff(saved_config(run), cfg)


# top-level nodes of a training run that evaluation reuses
EVAL_NODES = ("data", "evaluation", "paths", "seed")


def restore_eval_config(cfg: DictConfig, run_dir: str | Path, command_line: list[str]) -> list[str]:
    """Fill an eval config in place from a training run: its ``data``, ``evaluation``, ``paths``, ``seed`` and
    ``trainer.precision``
    (except nodes the eval command line chose as a whole, e.g. ``data=full_mix``; dotted overrides such as
    ``data.val_batch_size=8`` are applied on top), and ``ckpt_path`` = the run's ``last.ckpt`` unless given.
    Returns the diff against the config the eval command line alone would give."""
    run = check_run_dir(run_dir, "run")
    saved = saved_config(run)
    before = cfg.copy()
    chosen_groups = {override_key(o) for o in command_line if "." not in override_key(o)}
    dotted = [
        o for o in command_line if "." in override_key(o) and override_key(o).split(".")[0] in EVAL_NODES
    ]
    OmegaConf.set_struct(cfg, False)
    for node in EVAL_NODES:
        if node in saved and node not in chosen_groups:
            value = saved[node]
            if node == "paths":  # where this eval writes is its own run directory
                own = OmegaConf.to_container(cfg.paths, resolve=False)
                value = OmegaConf.merge(value, {k: own[k] for k in ("output_dir", "work_dir") if k in own})
            cfg[node] = value
    # validation ran at the run's precision (bf16-mixed on CPUs with native bf16): evaluate at the same one
    precision = OmegaConf.select(saved, "trainer.precision", default=None)
    if (
        precision is not None
        and "trainer" in cfg
        and "trainer.precision" not in map(override_key, command_line)
    ):
        cfg.trainer.precision = precision
    apply_value_overrides(cfg, dotted)
    if not cfg.get("ckpt_path") or str(cfg.ckpt_path) == "???":
        cfg.ckpt_path = str(last_checkpoint(run, "run").resolve())
    return config_diff(before, cfg, ignore=("paths.output_dir", "paths.work_dir", "run"))


def apply_value_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Apply ``key=value`` / ``+key=value`` / ``~key`` command-line overrides to a composed config in place."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete():
            parent, _, leaf = override.key_or_group.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if node is not None:
                node.pop(leaf, None)
        else:
            OmegaConf.update(cfg, override.key_or_group, override.value(), force_add=True)


def apply_debug_last(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``debug=<option>`` wins over ``+experiment=<name>``: Hydra applies an appended experiment after every
    group (so ``+experiment=smoke debug=overfit`` would run smoke's 2 epochs); the debug option's values are
    merged again on top, then the command line's ``key=value`` overrides (which win over both)."""
    from multipose.utils.compose import CONF_DIR

    keys = {override_key(o): o for o in overrides}
    debug = keys.get("debug")
    if not debug or "experiment" not in keys:
        return cfg
    option = debug.split("=", 1)[1]

    def chain(name: str) -> list[DictConfig]:
        node = OmegaConf.load(CONF_DIR / "debug" / f"{name}.yaml")
        parents = [d for d in node.pop("defaults", []) if isinstance(d, str) and d != "_self_"]
        return [layer for parent in parents for layer in chain(parent)] + [node]

    OmegaConf.set_struct(cfg, False)
    for layer in chain(option):
        cfg.merge_with(layer)
    apply_value_overrides(cfg, [o for o in overrides if "." in override_key(o)])
    return cfg


def write_run_config(output_dir: str | Path, cfg: DictConfig, overrides: list[str]) -> None:
    """Replace the run's ``.hydra/config.yaml`` and ``overrides.yaml`` with the effective ones (Hydra saved the
    config of the ``resume=...`` command line before the run's own config was restored)."""
    from multipose.utils.run import write_text_atomic

    folder = hydra_dir(Path(output_dir))
    write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


def command_line_overrides() -> list[str]:
    """The current Hydra job's command-line overrides ([] outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def format_diff(lines: list[str], limit: int = 40) -> str:
    if not lines:
        return "  (no change)"
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join(shown)
