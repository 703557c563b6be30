"""Train a multi-skeleton pose model.

    python -m multipose.train                                   # synthetic world, CPU, minutes
    python -m multipose.train +experiment=smoke                 # < 1 minute
    python -m multipose.train +experiment=full_mix trainer.devices=4 paths.data_root=/data
    python -m multipose.train -m loss.heatmap=0.5,1.0           # Hydra multirun
    python -m multipose.train ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   # resume

Writes ``metrics.json`` (flat ``<split>/<dataset>/<metric>`` keys), the composed config and checkpoints into the
Hydra run directory.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from multipose.config_validation import validate_train_config
from multipose.utils.run import (
    flat_metrics,
    instantiate_group,
    print_config_tree,
    task_wrapper,
    write_metrics,
)

log = logging.getLogger("multipose.train")


def build_model_config(cfg: DictConfig, datamodule) -> dict[str, Any]:
    """The plain-dict model description stored in checkpoints: backbone and head settings from the config, one
    head per dataset of the mix with its skeleton's keypoint count."""
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone["img_size"] = list(datamodule.input_size)
    backbone["num_experts"] = len(datamodule.dataset_names)
    return {
        "backbone": backbone,
        "head": OmegaConf.to_container(cfg.head, resolve=True),
        "heads": {
            name: {
                "skeleton": datamodule.skeletons[name].name,
                "num_keypoints": datamodule.skeletons[name].num_keypoints,
            }
            for name in datamodule.dataset_names
        },
        "heatmap_size": list(datamodule.heatmap_size),
    }


@task_wrapper
def train(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    import torch

    from multipose.lit_module import PoseLitModule
    from multipose.training import build_stage_callback

    validate_train_config(cfg)
    output_dir = cfg.paths.output_dir
    if cfg.get("print_config", True):
        print_config_tree(cfg, save_dir=output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)

    log.info("Building data module <%s>", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data, _recursive_=False)
    model_config = build_model_config(cfg, datamodule)
    if cfg.get("distill"):
        from multipose.distillation import build_distill_module

        module = build_distill_module(cfg, model_config)
    else:
        module = PoseLitModule(
            model_config=model_config,
            optim=OmegaConf.to_container(cfg.optim, resolve=True),
            loss=OmegaConf.to_container(cfg.loss, resolve=True),
            evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
        )
    if cfg.backbone.get("init"):
        from multipose.models.checkpoint_io import load_backbone_init

        load_backbone_init(module.model.backbone, cfg.backbone.init)
    if cfg.get("init_from"):
        from multipose.models.loading import load_weights_into

        load_weights_into(module.model, cfg.init_from)

    callbacks = instantiate_group(cfg.get("callbacks"), "callback")
    if (stages := build_stage_callback(cfg)) is not None:  # +stage=<name>: freeze / thaw per epoch
        callbacks.append(stages)
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        log.info("Training finished after %d steps", trainer.global_step)
    # the last validation epoch already scored the final weights unless validation ran less often
    if cfg.get("validate", True) and module.val_metrics_step != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = dict(module.val_metrics)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    if trainer.is_global_zero:
        for key, value in flat_metrics(trainer.callback_metrics).items():
            if key.startswith("train/"):
                metrics.setdefault(key, value)
        path = write_metrics(output_dir, metrics)
        log.info("Wrote %s", path)
        _print_summary(metrics)
    return flat_metrics(metrics)


def _print_summary(metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="validation")
    table.add_column("dataset")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] == "val" and len(parts) == 3:
            table.add_row(parts[1], parts[2], f"{value:.4f}")
    Console().print(table)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    metric_name = cfg.get("optimized_metric")
    if metric_name and metric_name in metrics:
        value = metrics[metric_name]
        return None if math.isnan(value) else value
    return None


if __name__ == "__main__":
    main()
