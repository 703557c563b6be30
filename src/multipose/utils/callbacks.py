"""Console callbacks: a progress bar without ``v_num``, a one-line model size instead of a summary table whose
FLOPs column is 0, and one learning-rate column per distinct rate instead of one per parameter group."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

log = logging.getLogger("multipose")


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar without the logger version (``v_num``)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


class ModelSize(L.Callback):
    """One log line with the parameter count of the backbone and of each head (replaces the model summary
    table, whose FLOPs column is 0 for this model)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model = getattr(pl_module, "model", pl_module)
        parts = []
        for name, child in model.named_children():
            count = sum(p.numel() for p in child.parameters())
            if name == "heads" and hasattr(child, "items"):
                heads = ", ".join(
                    f"{k} {_count(sum(p.numel() for p in v.parameters()))}" for k, v in child.items()
                )
                parts.append(f"heads ({heads})")
            elif count:
                parts.append(f"{name} {_count(count)}")
        total = sum(p.numel() for p in pl_module.parameters())
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        log.info("model: %s; %s parameters, %s trainable", ", ".join(parts), _count(total), _count(trainable))


class LRMonitor(L.Callback):
    """Log the learning rate once per distinct rate, not once per parameter group.

    Parameter groups that start with the same rate (and therefore follow the same schedule) share one column:
    ``lr`` when there is a single rate, otherwise ``lr/<group name>`` (the ``name`` of the first group with that
    rate, ``pg<i>`` when groups are unnamed), the highest rate first.
    """

    def __init__(self, logging_interval: str = "step") -> None:
        if logging_interval not in ("step", "epoch"):
            raise ValueError(f"logging_interval must be 'step' or 'epoch', got {logging_interval!r}")
        self.logging_interval = logging_interval
        self.columns: dict[str, int] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.optimizers:
            return
        groups = trainer.optimizers[0].param_groups
        first_by_rate: dict[float, int] = {}
        for i, group in enumerate(groups):
            rate = float(group.get("initial_lr", group["lr"]))
            first_by_rate.setdefault(rate, i)
        ordered = sorted(first_by_rate.items(), key=lambda item: -item[0])
        if len(ordered) == 1:
            self.columns = {"lr": ordered[0][1]}
        else:
            self.columns = {f"lr/{groups[i].get('name') or f'pg{i}'}": i for _, i in ordered}

    def _log(self, trainer: L.Trainer) -> None:
        if not trainer.optimizers or not trainer.loggers or not self.columns:
            return
        groups = trainer.optimizers[0].param_groups
        values = {key: float(groups[i]["lr"]) for key, i in self.columns.items() if i < len(groups)}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval == "step" and trainer._logger_connector.should_update_logs:
            self._log(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval == "epoch":
            self._log(trainer)
