"""Validate a composed Hydra config before anything is built, with messages that say what to change.

Everything a typo can break is checked here up front (option names, sizes, keypoint counts, files), so a run
fails in a second with a pointed message instead of after minutes of data loading.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

FFN_TYPES = ("shared", "ps", "independent", "shared_independent")
HEAD_TYPES = ("classic", "classic_fp", "simple", "minimal")
PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64", "64-true")


class ConfigError(ValueError):
    """A composed config that cannot run; the message names the option and what to do."""


def validate_data_config(data: DictConfig, check_files: bool = True) -> None:
    """Check the data mix (formats, skeletons, codecs, metrics, counts) with the DataModule's own parser, and
    that the annotation files exist (a synthetic world is generated on first use, so its files are not checked)."""
    from multipose.data.config import parse_dataset_entries

    if data is None or "datasets" not in data:
        raise ConfigError("config has no `data.datasets`; pick a mix with data=<name> (see conf/data/)")
    entries = parse_dataset_entries(
        data.datasets, data.get("root"), data.get("mode", "fixed"), data.get("batch_size")
    )
    if check_files and not data.get("synthetic"):
        for entry in entries.values():
            entry.check_files()


def validate_paths(cfg: DictConfig) -> None:
    """``paths.data_root`` must exist unless it is the default ``<paths.root_dir>/data`` (created for the
    synthetic world): a typo must not silently create a new tree and generate the world there."""
    paths = cfg.get("paths")
    if not paths or "data_root" not in paths or "root_dir" not in paths:
        return
    data_root = Path(str(paths.data_root)).expanduser()
    default = Path(str(paths.root_dir)).expanduser() / "data"
    if not data_root.exists() and data_root.resolve() != default.resolve():
        raise ConfigError(
            f"paths.data_root={data_root} does not exist; point it at the folder that holds your datasets "
            f"(or drop the override: the synthetic world is generated under {default})"
        )


def validate_devices(trainer: DictConfig) -> None:
    """More CPU processes than cores only slows a run down (and changes its numbers): refuse it."""
    if str(trainer.get("accelerator", "cpu")) != "cpu":
        return
    devices = trainer.get("devices", 1)
    cores = os.cpu_count() or 1
    if isinstance(devices, int) and devices > cores:
        raise ConfigError(
            f"trainer.devices={devices} on the CPU starts {devices} training processes on a machine with {cores} "
            f"cores: slower than one process, with different numbers. Use trainer.devices=1 (or at most {cores}; "
            "CPU DDP is meant for testing the distributed path), or trainer=gpu on a GPU machine"
        )


def validate_runtime(cfg: DictConfig) -> None:
    """Checks that need torch (call after the heavy imports, before any data is read): a known backbone, and a
    GPU when the trainer asks for one."""
    import torch

    from multipose.models.registry import list_backbones

    if cfg.backbone.name not in list_backbones():
        raise ConfigError(f"backbone.name={cfg.backbone.name!r} is unknown; choose one of {list_backbones()}")
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch sees no CUDA device (torch.cuda.is_available() is False, "
            f"torch {torch.__version__}); run on the CPU with trainer=cpu, or check CUDA_VISIBLE_DEVICES and the "
            "torch build"
        )


def experiment_precedence_notes(overrides: list[str]) -> list[str]:
    """An experiment (``+experiment=NAME``) is applied after the config groups, so values it sets win over a
    group option chosen on the same command line (``+experiment=smoke backbone=vit_base`` keeps smoke's
    backbone sizes). Returns one note per such group; values given as ``group.key=value`` win over both."""
    from omegaconf import OmegaConf

    from multipose.utils.compose import CONF_DIR

    experiment = next(
        (o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("experiment=")), None
    )
    if not experiment:
        return []
    path = CONF_DIR / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return []
    values = OmegaConf.load(path)
    notes = []
    for override in overrides:
        key, _, option = override.lstrip("+").partition("=")
        if "." in key or key in ("experiment", "hydra") or key not in values:
            continue
        node = values[key]
        shown = OmegaConf.to_yaml(node).strip().replace("\n", ", ") if hasattr(node, "keys") else str(node)
        notes.append(
            f"{key}={option}: +experiment={experiment} sets {key} values that are applied on top of it "
            f"({shown}); experiments come after config groups. To change one of them, pass {key}.<field>=... "
            "on the command line (command-line values win over both)"
        )
    return notes


def backbone_options() -> list[str]:
    """Backbone names of the shipped ``conf/backbone/*.yaml`` files (read without importing torch)."""
    import yaml

    from multipose.utils.compose import CONF_DIR

    names = []
    for path in sorted((CONF_DIR / "backbone").glob("*.yaml")):
        with open(path) as f:
            name = (yaml.safe_load(f) or {}).get("name")
        if name:
            names.append(str(name))
    return names


def validate_train_config(cfg: DictConfig, check_files: bool = True) -> None:
    """Everything that can be checked without torch (about a second)."""
    validate_data_config(cfg.data, check_files=check_files)
    if check_files:
        validate_paths(cfg)
    validate_devices(cfg.trainer)

    bb = cfg.backbone
    known = backbone_options()
    if known and bb.name not in known:
        raise ConfigError(f"backbone.name={bb.name!r} is unknown; choose one of {known} (backbone=<name>)")
    if bb.ffn not in FFN_TYPES:
        raise ConfigError(f"backbone.ffn={bb.ffn!r} is unknown; choose one of {list(FFN_TYPES)}")
    if bb.get("init") and not Path(str(bb.init)).is_file():
        raise ConfigError(
            f"backbone.init={bb.init} does not exist; give the path of MAE/ViTPose weights or null"
        )
    if cfg.head.type not in HEAD_TYPES:
        raise ConfigError(f"head.type={cfg.head.type!r} is unknown; choose one of {list(HEAD_TYPES)}")

    in_h, in_w = (int(v) for v in cfg.data.input_size)
    hm_h, hm_w = (int(v) for v in cfg.data.heatmap_size)
    stride = 16 // int(bb.get("ratio", 1))
    if in_h % stride or in_w % stride:
        raise ConfigError(
            f"data.input_size={[in_h, in_w]} must be a multiple of the patch stride {stride} "
            f"(backbone.ratio={bb.get('ratio', 1)})"
        )
    up = 4 if cfg.head.type != "classic" else 2 ** len(cfg.head.get("deconv_filters", [256, 256]))
    expect = [in_h // stride * up, in_w // stride * up]
    if [hm_h, hm_w] != expect:
        raise ConfigError(
            f"data.heatmap_size={[hm_h, hm_w]} does not match what a {cfg.head.type} head gives for "
            f"input {[in_h, in_w]}: {expect}; set data.heatmap_size={expect}"
        )

    for name in cfg.loss.get("dataset_weights") or {}:
        if name not in cfg.data.datasets:
            raise ConfigError(
                f"loss.dataset_weights.{name}: no dataset {name!r} in the mix; datasets are {list(cfg.data.datasets)}"
            )
    _check_bridges(cfg)
    if str(cfg.trainer.get("precision", "32")) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={cfg.trainer.precision!r} is unknown; choose one of {list(PRECISIONS)}"
        )
    if cfg.trainer.get("use_distributed_sampler", False):
        raise ConfigError(
            "trainer.use_distributed_sampler must stay false: the mixed-batch sampler shards data per rank itself"
        )
    if cfg.get("ckpt_path") and not Path(str(cfg.ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; give a Lightning .ckpt to resume from")
    if cfg.get("init_from") and not Path(str(cfg.init_from)).is_file():
        raise ConfigError(f"init_from={cfg.init_from} does not exist")


def _check_bridges(cfg: DictConfig) -> None:
    """``bridge.<name>`` must be a known bridge, and ``loss.<name>.*`` weights need their bridge on."""
    from multipose.bridges.base import BRIDGES

    bridges = cfg.get("bridge") or {}
    for name in bridges:
        if name not in BRIDGES:
            raise ConfigError(f"bridge.{name}: unknown bridge; known bridges are {sorted(BRIDGES)}")
    for name in BRIDGES:
        weights = cfg.loss.get(name)
        if weights and name not in bridges:
            raise ConfigError(
                f"loss.{name}.* is set but the {name} bridge is off: add +bridge={name} "
                f"(it sets loss.{name} to the method's weights; override them after it)"
            )
