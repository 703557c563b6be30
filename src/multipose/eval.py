"""Evaluate a trained checkpoint on the validation sets of a data mix.

    python -m multipose.eval ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
    python -m multipose.eval ckpt_path=... data=full_mix paths.data_root=/data trainer=gpu

Writes ``metrics.json`` with the same keys as training (``val/<dataset>/<metric>``) into the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from multipose.utils.run import print_config_tree, task_wrapper, write_metrics

log = logging.getLogger("multipose.eval")


@task_wrapper
def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L

    from multipose.config_validation import validate_data_config
    from multipose.lit_module import PoseLitModule
    from multipose.models.checkpoints import check_training_checkpoint

    ckpt = Path(str(cfg.ckpt_path))
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt} does not exist; pass the .ckpt file written by training")
    validate_data_config(cfg.data)
    check_training_checkpoint(ckpt, "ckpt_path")
    if cfg.get("print_config", True):
        print_config_tree(cfg, save_dir=cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    module = PoseLitModule.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=True)
    module.eval_cfg.update(OmegaConf.to_container(cfg.evaluation, resolve=True))
    datamodule = hydra.utils.instantiate(cfg.data, _recursive_=False)
    if list(datamodule.dataset_names) != list(module.dataset_names):
        raise ValueError(
            f"data mix {list(datamodule.dataset_names)} does not match the checkpoint's heads "
            f"{list(module.dataset_names)}; pass the data config used in training (data=<mix>)"
        )
    module.mix = datamodule.describe()  # the crops and codecs of the data evaluated here
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = dict(module.val_metrics)
    if trainer.is_global_zero:
        log.info("Wrote %s", write_metrics(cfg.paths.output_dir, metrics))
        from multipose.train import _print_summary

        _print_summary(metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
