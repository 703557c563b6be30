"""Scaffolding of the tests that train: a run config in a temporary folder, the training CLI in a subprocess,
two-process DDP on the CPU, and the callbacks tests name as Hydra targets (``train_helpers.<Class>``).

Hydra targets resolve in the training process: the subprocess environment puts ``tests/`` and ``src/`` on
``PYTHONPATH`` so that a target such as ``train_helpers.StateProbe`` imports there too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, open_dict

from conftest import REPO, compose

TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------- configs


def run_config(
    tmp_path: Path, world: Path, overrides: list[str], name: str = "train", validate: bool | None = None
) -> DictConfig:
    """``conf/<name>.yaml`` composed under ``overrides`` for a run in ``tmp_path/run`` on the world ``world``
    (``print_config`` off; ``validate`` set when given)."""
    cfg = compose(name, [*overrides, f"paths.root_dir={tmp_path}", f"data.root={world}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(tmp_path)
        cfg.print_config = False
        if validate is not None:
            cfg.validate = validate
    return cfg


# ---------------------------------------------------------------------------------------------- the CLI


def untrained_checkpoint(cfg: DictConfig, dm, path: Path, seed: int = 0):
    """The LightningModule of ``cfg`` for the data module ``dm`` with seeded random weights, saved as a weights-only
    Lightning checkpoint at ``path``; returns the module."""
    from multipose.lit_module import PoseLitModule
    from multipose.train import build_model_config

    torch.manual_seed(seed)
    module = PoseLitModule(build_model_config(cfg, dm), mix=dm.describe())
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path, weights_only=True)
    return module


def train_env() -> dict[str, str]:
    """The environment of a training subprocess: W&B off, unbuffered output, ``src/`` and ``tests/`` importable."""
    pythonpath = os.pathsep.join([str(REPO / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}


def run_train_cli(
    args: list[str], cwd: Path = REPO, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess:
    """``python -m multipose.train <args>`` in ``cwd``, output captured. ``check=True`` asserts that it
    succeeded, showing the tails of its output otherwise."""
    proc = subprocess.run(
        [sys.executable, "-m", "multipose.train", *args],
        cwd=cwd,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


# ---------------------------------------------------------------------------------------------- DDP


def ddp_spawn_trainer(**kwargs) -> L.Trainer:
    """A Lightning trainer of two spawned CPU processes, with nothing written but what the test asks for
    (no logger, checkpoints, progress bar or model summary unless ``kwargs`` say otherwise)."""
    settings = {
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp_spawn",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**settings, **kwargs})


def load_state(path: Path) -> dict:
    """A state dict written by :class:`StateProbe` (or any ``torch.save`` of tensors), on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


class StateProbe(L.Callback):
    """Writes each rank's model state at every training epoch start (``rank{r}_epoch{e}.pt``) and at the end of
    fitting (``rank{r}_end.pt``) into ``out``."""

    def __init__(self, out: str):
        self.out = Path(out)

    def _save(self, trainer, pl_module, when):
        self.out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
        torch.save(state, self.out / f"rank{trainer.global_rank}_{when}.pt")

    def on_train_epoch_start(self, trainer, pl_module):
        self._save(trainer, pl_module, f"epoch{trainer.current_epoch}")

    def on_fit_end(self, trainer, pl_module):
        self._save(trainer, pl_module, "end")


def probe_overrides(out: Path) -> list[str]:
    """The overrides that add a :class:`StateProbe` writing into ``out`` to a training run."""
    return ["+callbacks.probe._target_=train_helpers.StateProbe", f"+callbacks.probe.out={out}"]


# ---------------------------------------------------------------------------------------------- callbacks


class StopAfterEpochs(L.Callback):
    """Simulates a run that dies after ``epochs`` epochs (its schedule still planned for max_epochs)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def stop_after_overrides(epochs: int) -> list[str]:
    """The overrides that add a :class:`StopAfterEpochs` to a training run."""
    return ["+callbacks.stop._target_=train_helpers.StopAfterEpochs", f"+callbacks.stop.epochs={epochs}"]
