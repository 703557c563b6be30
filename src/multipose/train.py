"""Train a multi-skeleton pose model.

    python -m multipose.train                                   # synthetic world, CPU, minutes
    python -m multipose.train +experiment=smoke                 # < 1 minute
    python -m multipose.train +experiment=full_mix trainer.devices=4 paths.data_root=/data
    python -m multipose.train -m loss.heatmap=0.5,1.0           # Hydra multirun
    python -m multipose.train resume=logs/train/runs/<run>      # resume a run with its own config
    python -m multipose.train ckpt_path=<run>/checkpoints/last.ckpt   # resume a checkpoint under this config

Writes ``metrics.json`` (flat ``<split>/<dataset>/<metric>`` keys), the composed config and checkpoints into the
Hydra run directory.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from multipose.config_validation import experiment_precedence_notes, validate_runtime, validate_train_config
from multipose.utils.cli import run_entry_point
from multipose.utils.console import print_summary
from multipose.utils.run import (
    flat_metrics,
    instantiate_callbacks,
    instantiate_group,
    print_config_tree,
    task_wrapper,
    write_metrics,
)
from multipose.utils.rundir import (
    apply_debug_last,
    command_line_overrides,
    format_diff,
    restore_train_config,
    saved_overrides,
    write_run_config,
)

log = logging.getLogger("multipose.train")


def build_model_config(cfg: DictConfig, datamodule) -> dict[str, Any]:
    """The model description stored in checkpoints (:class:`multipose.models.model_config.ModelConfig`)."""
    from multipose.models.model_config import model_config_from_hydra

    return model_config_from_hydra(cfg, datamodule).to_dict()


@task_wrapper
def train(cfg: DictConfig) -> dict[str, float]:
    validate_train_config(cfg)  # before the heavy imports: a config mistake fails in about a second
    output_dir = cfg.paths.output_dir
    if cfg.get("print_config", True):
        overrides = command_line_overrides()
        if cfg.get("resume"):  # the restored run's overrides (prepare() wrote them into this run's .hydra/)
            overrides = saved_overrides(Path(str(output_dir)))
        print_config_tree(cfg, save_dir=output_dir, overrides=overrides)

    import lightning as L
    import torch

    from multipose.lit_module import PoseLitModule
    from multipose.utils.console import quiet_lightning

    quiet_lightning()
    validate_runtime(cfg)
    if cfg.get(
        "ckpt_path"
    ):  # Lightning loads it late: fail now, with the file named, if it is not a checkpoint
        from multipose.models.checkpoints import check_training_checkpoint

        check_training_checkpoint(cfg.ckpt_path, "ckpt_path")
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    log.info("Building data module <%s>", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data, _recursive_=False)
    model_config = build_model_config(cfg, datamodule)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        from multipose.utils.ckpt_fit import check_resume_fits

        check_resume_fits(ckpt_path, model_config)
    if cfg.get("distill"):
        from multipose.distillation import build_distill_module

        module = build_distill_module(cfg, model_config)
    else:
        module = PoseLitModule(
            model_config=model_config,
            optim=OmegaConf.to_container(cfg.optim, resolve=True),
            loss=OmegaConf.to_container(cfg.loss, resolve=True),
            evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
            model=OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else None,
            mix=datamodule.describe(),
            bridge=OmegaConf.to_container(cfg.bridge, resolve=True) if cfg.get("bridge") else None,
        )
    if cfg.backbone.get("init"):
        from multipose.models.checkpoints import load_backbone_init

        load_backbone_init(module.model.backbone, cfg.backbone.init)
    if cfg.get("init_from"):
        from multipose.models.loading import load_weights_into

        load_weights_into(module.model, cfg.init_from)

    trainer, loggers = build_trainer(cfg)
    for lg in loggers:  # the configured loggers (under fast_dev_run the trainer holds a dummy instead)
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        if ckpt_path:
            log.info("Resuming from %s", ckpt_path)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
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
        path = write_metrics(output_dir, metrics, datamodule.skipped_images_metrics())
        print_summary(metrics, primary_metrics(cfg.data), path)
        log.info("Run directory: %s", output_dir)
    return flat_metrics(metrics)


def build_trainer(cfg: DictConfig):
    """``(trainer, loggers)``: the Lightning Trainer with the configured callbacks and loggers. Checkpoints only ever go to
    ``<run dir>/checkpoints`` (Lightning's implicit logger-folder checkpoint is off unless a ModelCheckpoint is
    configured)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from multipose.training import build_stage_callback
    from multipose.utils.callbacks import ModelSize

    callbacks = instantiate_callbacks(cfg.get("callbacks"), cfg.trainer)
    if (stages := build_stage_callback(cfg)) is not None:  # +stage=<name>: freeze / thaw per epoch
        callbacks.append(stages)
    loggers = instantiate_group(cfg.get("logger"), "logger")
    extra: dict[str, Any] = {}
    if "enable_checkpointing" not in cfg.trainer:
        extra["enable_checkpointing"] = any(isinstance(cb, ModelCheckpoint) for cb in callbacks)
    if "enable_model_summary" not in cfg.trainer and any(isinstance(cb, ModelSize) for cb in callbacks):
        extra["enable_model_summary"] = False  # ModelSize's one line replaces Lightning's table (FLOPs 0)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    log.info(
        "callbacks: %s; loggers: %s",
        ", ".join(type(cb).__name__ for cb in callbacks) or "none",
        ", ".join(type(lg).__name__ for lg in loggers) or "none",
    )
    return trainer, loggers


def primary_metrics(data: DictConfig) -> dict[str, str]:
    """``dataset -> primary metric key`` (``AP``, ``PCKh@0.5``, ...) in mix order."""
    from multipose.lit_module import PRIMARY_METRIC

    return {str(n): PRIMARY_METRIC.get(str(e.get("metric", "coco")), "AP") for n, e in data.datasets.items()}


def prepare(cfg: DictConfig) -> DictConfig:
    """Command-line set-up before training: the run directory first, ``resume=<run dir>`` restored, notes on
    experiment/group precedence."""
    output_dir = cfg.paths.output_dir
    log.info("Run directory: %s", output_dir)
    overrides = command_line_overrides()
    if cfg.get("resume"):
        cfg, effective, diff = restore_train_config(cfg.resume, overrides)
        log.info(
            "Resuming run %s; its config with this command line's changes:\n%s",
            cfg_resume(overrides),
            format_diff(diff),
        )
        write_run_config(output_dir, cfg, effective)
    cfg = apply_debug_last(cfg, overrides)
    for note in experiment_precedence_notes(overrides):
        log.warning(note)
    return cfg


def cfg_resume(overrides: list[str]) -> str:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), "?")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from multipose.utils.sweep import run_job

    run_dir = str(cfg.paths.output_dir)
    # in a multirun a failing job is recorded in its run dir (job_failed.json) and the sweep goes on; it returns
    # no objective (None, as for a NaN metric: the Optuna sweeper records a failed trial; a NaN would stop it)
    metrics = run_entry_point(lambda: run_job(lambda: train(prepare(cfg)), run_dir), run_dir=run_dir)
    if metrics is None:
        return None
    metric_name = cfg.get("optimized_metric")
    if metric_name and metric_name in metrics:
        value = metrics[metric_name]
        return None if math.isnan(value) else value
    return None


if __name__ == "__main__":
    main()
