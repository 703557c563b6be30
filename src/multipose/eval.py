"""Evaluate a trained checkpoint on the validation sets of a data mix.

    python -m multipose.eval run=logs/train/runs/<run>            # the run's data mix and its last.ckpt
    python -m multipose.eval run=<run> ckpt_path=<run>/checkpoints/best_epoch_010.ckpt trainer=gpu
    python -m multipose.eval ckpt_path=... data=full_mix paths.data_root=/data

Writes ``metrics.json`` with the same keys as training (``val/<dataset>/<metric>``) into the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from multipose.utils.cli import run_entry_point
from multipose.utils.console import print_summary
from multipose.utils.run import print_config_tree, task_wrapper, write_metrics
from multipose.utils.rundir import command_line_overrides, format_diff, restore_eval_config

log = logging.getLogger("multipose.eval")


def prepare(cfg: DictConfig) -> DictConfig:
    """``run=<run dir>``: take the training run's data/evaluation/paths and its last.ckpt (command-line overrides on
    top), print what that changes, and check everything that needs no torch."""
    from multipose.config_validation import ConfigError, validate_data_config, validate_paths

    log.info("Run directory: %s", cfg.paths.output_dir)
    if cfg.get("run"):
        diff = restore_eval_config(cfg, cfg.run, command_line_overrides())
        log.info("Evaluating run %s; settings taken from it:\n%s", cfg.run, format_diff(diff))
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "nothing to evaluate: pass run=<run dir> (a training run directory) or ckpt_path=<file.ckpt>"
        )
    ckpt = Path(str(cfg.ckpt_path))
    if not ckpt.is_file():
        raise ConfigError(f"ckpt_path={ckpt} does not exist; pass the .ckpt file written by training")
    validate_data_config(cfg.data)
    validate_paths(cfg)
    return cfg


@task_wrapper
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.ckpt_path`` on the validation sets of ``cfg.data`` (call :func:`prepare` first for run=...)."""
    from multipose.config_validation import ConfigError, validate_data_config
    from multipose.models.checkpoints import check_training_checkpoint

    ckpt = Path(str(cfg.get("ckpt_path")))
    if not cfg.get("ckpt_path") or not ckpt.is_file():
        raise ConfigError(f"ckpt_path={ckpt} does not exist; pass the .ckpt file written by training")
    validate_data_config(cfg.data)
    if cfg.get("print_config", True):
        print_config_tree(cfg, save_dir=cfg.paths.output_dir, overrides=command_line_overrides())

    import lightning as L

    from multipose.lit_module import PoseLitModule
    from multipose.utils.ckpt_fit import check_eval_fits
    from multipose.utils.console import quiet_lightning

    quiet_lightning()
    check_eval_fits(ckpt, cfg.data)  # heads vs the mix's datasets and skeletons, before any data is read
    check_training_checkpoint(
        ckpt, "ckpt_path"
    )  # a Lightning training checkpoint with weights (clear errors)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = PoseLitModule.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=True)
    module.eval_cfg.update(OmegaConf.to_container(cfg.evaluation, resolve=True))
    datamodule = hydra.utils.instantiate(cfg.data, _recursive_=False)
    module.mix = datamodule.describe()  # the crops and codecs of the data evaluated here
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, enable_model_summary=False
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = dict(module.val_metrics)
    if trainer.is_global_zero:
        from multipose.train import primary_metrics

        path = write_metrics(cfg.paths.output_dir, metrics, datamodule.skipped_images_metrics())
        print_summary(metrics, primary_metrics(cfg.data), path)
        log.info("Run directory: %s", cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_entry_point(lambda: evaluate(prepare(cfg)), run_dir=str(cfg.paths.output_dir))


if __name__ == "__main__":
    main()
