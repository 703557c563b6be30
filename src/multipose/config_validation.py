"""Validate a composed Hydra config before anything is built, with messages that say what to change.

Everything a typo can break is checked here up front (option names, sizes, keypoint counts, files), so a run
fails in a second with a pointed message instead of after minutes of data loading.
"""

from __future__ import annotations

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
    entries = parse_dataset_entries(data.datasets, data.get("root"), data.get("mode", "fixed"), data.get("batch_size"))
    if check_files and not data.get("synthetic"):
        for entry in entries.values():
            entry.check_files()


def validate_train_config(cfg: DictConfig, check_files: bool = True) -> None:
    from multipose.models.registry import list_backbones

    validate_data_config(cfg.data, check_files=check_files)

    bb = cfg.backbone
    if bb.name not in list_backbones():
        raise ConfigError(f"backbone.name={bb.name!r} is unknown; choose one of {list_backbones()}")
    if bb.ffn not in FFN_TYPES:
        raise ConfigError(f"backbone.ffn={bb.ffn!r} is unknown; choose one of {list(FFN_TYPES)}")
    if bb.get("init") and not Path(str(bb.init)).is_file():
        raise ConfigError(f"backbone.init={bb.init} does not exist; give the path of MAE/ViTPose weights or null")
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

    for name in (cfg.loss.get("dataset_weights") or {}):
        if name not in cfg.data.datasets:
            raise ConfigError(
                f"loss.dataset_weights.{name}: no dataset {name!r} in the mix; datasets are {list(cfg.data.datasets)}"
            )
    if str(cfg.trainer.get("precision", "32")) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={cfg.trainer.precision!r} is unknown; choose one of {list(PRECISIONS)}")
    if cfg.trainer.get("use_distributed_sampler", False):
        raise ConfigError(
            "trainer.use_distributed_sampler must stay false: the mixed-batch sampler shards data per rank itself"
        )
    if cfg.get("ckpt_path") and not Path(str(cfg.ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; give a Lightning .ckpt to resume from")
    if cfg.get("init_from") and not Path(str(cfg.init_from)).is_file():
        raise ConfigError(f"init_from={cfg.init_from} does not exist")
