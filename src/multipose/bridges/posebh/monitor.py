"""How large the embedding module's optimiser steps are (``+callbacks.posebh_updates._target_=
multipose.bridges.posebh.monitor.UpdateSize``).

PoseBH's loss weights are tiny (alpha 3.33e-6, beta 1.25e-7, gamma 1.25e-8), and the embedding module receives
only those terms. AdamW divides the first moment by ``sqrt(v_hat) + eps`` (eps 1e-8): when the gradients are of the
order of eps the step is no longer the scale-free ``lr * sign``-like Adam step but shrinks with the gradient. This
callback measures it per optimiser step: the RMS of the parameter change, the RMS of the gradient and the median of
``sqrt(v_hat) / eps`` over the module's parameters (below ~1: eps-dominated). It logs
``train/<module>/update_rms`` etc. and writes the means to ``<run dir>/update_size.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

__all__ = ["UpdateSize"]


class UpdateSize(L.Callback):
    """Args: module: dotted path of the watched submodule of the LightningModule (default the PoseBH embedding)."""

    def __init__(self, module: str = "bridges.posebh.embed") -> None:
        self.module = module
        self._before: list[torch.Tensor] = []
        self._grad = float("nan")
        self.history: list[dict[str, float]] = []

    def _params(self, pl_module: L.LightningModule) -> list[torch.nn.Parameter]:
        return [p for p in pl_module.get_submodule(self.module).parameters() if p.requires_grad]

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        params = self._params(pl_module)
        self._before = [p.detach().clone() for p in params]
        grads = [p.grad.detach().float().flatten() for p in params if p.grad is not None]
        self._grad = float(torch.cat(grads).pow(2).mean().sqrt()) if grads else float("nan")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._before:
            return
        params = self._params(pl_module)
        delta = torch.cat([(p.detach() - b).float().flatten() for p, b in zip(params, self._before)])
        ratios = []
        opt = trainer.optimizers[0]
        for group in opt.param_groups:
            eps, (_, beta2) = group.get("eps", 1e-8), group.get("betas", (0.9, 0.999))
            ids = {id(p) for p in params}
            for p in group["params"]:
                state = opt.state.get(p, {})
                if id(p) in ids and "exp_avg_sq" in state:
                    step = float(state["step"])
                    v_hat = state["exp_avg_sq"] / (1 - beta2**step)
                    ratios.append((v_hat.sqrt() / eps).flatten())
        row = {
            "update_rms": float(delta.pow(2).mean().sqrt()),
            "grad_rms": self._grad,
            "sqrt_v_over_eps_median": float(torch.cat(ratios).median()) if ratios else float("nan"),
        }
        self.history.append(row)
        self._before = []
        for key, value in row.items():
            pl_module.log(f"train/{self.module}/{key}", value, batch_size=1)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.history or not trainer.is_global_zero:
            return
        keys = self.history[0].keys()
        out = {k: float(sum(r[k] for r in self.history) / len(self.history)) for k in keys}
        out["steps"] = len(self.history)
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
        path = Path(trainer.default_root_dir) / "update_size.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(path)
