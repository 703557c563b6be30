"""``last.ckpt`` that survives: written at every training epoch end, every N optimiser steps, on an exception and
when the run is stopped with Ctrl-C (SIGINT) or SIGTERM, always atomically (temporary file in the same folder,
then ``os.replace``), always into ``<run dir>/checkpoints/`` whatever the logger.

A signal does not interrupt a step half-way: the handler only raises a flag, the current optimiser step finishes,
``last.ckpt`` is written and the run stops with :class:`RunInterrupted` (exit status 130 for SIGINT, 143 for
SIGTERM from the command line). A second Ctrl-C while that happens stops at once, as Python normally does.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from multipose.utils.cli import RunInterrupted
from multipose.utils.run import file_mode

__all__ = ["BestCheckpoint", "RunCheckpoint", "RunInterrupted", "save_checkpoint_atomic"]

log = logging.getLogger("multipose.checkpoint")

_SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def replace_atomic(tmp: str | Path, path: str | Path) -> Path:
    """Give ``tmp`` the umask's permissions and move it over ``path`` in one step."""
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
    return Path(path)


def temp_path_next_to(path: str | Path) -> Path:
    """A fresh, empty temporary file in the folder of ``path`` (same file system, so ``os.replace`` is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def save_checkpoint_atomic(trainer: L.Trainer, path: str | Path, weights_only: bool = False) -> Path:
    """``trainer.save_checkpoint`` through a temporary file in the same folder and ``os.replace`` (every rank
    calls this, rank 0 writes), so a crash or kill never leaves a truncated checkpoint under ``path``."""
    path = Path(path)
    tmp = temp_path_next_to(path) if trainer.is_global_zero else None
    try:
        trainer.save_checkpoint(tmp if tmp is not None else path, weights_only)
        if tmp is not None:
            replace_atomic(tmp, path)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return path


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (best-k by a monitored metric) with atomic, umask-honouring writes."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        from weakref import proxy

        save_checkpoint_atomic(trainer, filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class RunCheckpoint(L.Callback):
    """Keep ``<dirpath>/<filename>`` (default ``last.ckpt``) up to date with the full resume state.

    Args:
        dirpath: folder of the checkpoint, ``${paths.output_dir}/checkpoints`` in the configs.
        every_n_steps: also write after every N optimiser steps (0: only at epoch ends).
        on_exception: write when training fails with an exception (single process only: under DDP the other
            ranks may not reach the save, and a collective save would hang).
        on_signal: stop cleanly on SIGINT / SIGTERM after the current step, writing the checkpoint first.
    """

    def __init__(
        self,
        dirpath: str | Path,
        filename: str = "last.ckpt",
        every_n_steps: int = 0,
        on_exception: bool = True,
        on_signal: bool = True,
    ) -> None:
        if int(every_n_steps) < 0:
            raise ValueError(f"callbacks.last_checkpoint.every_n_steps must be >= 0, got {every_n_steps}")
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.every_n_steps = int(every_n_steps)
        self.save_on_exception = bool(on_exception)
        self.on_signal = bool(on_signal)
        self.saved_step = -1
        self.stop_signal: int | None = None
        self._trainer: L.Trainer | None = None
        self._previous_handlers: dict[int, Any] = {}

    @property
    def path(self) -> Path:
        return self.dirpath / self.filename

    @property
    def state_key(self) -> str:
        return f"RunCheckpoint{{'filename': '{self.filename}'}}"

    # ------------------------------------------------------------------ saving
    def save(self, trainer: L.Trainer) -> Path:
        """Write the checkpoint through a temporary file (every rank calls this; rank 0 writes)."""
        save_checkpoint_atomic(trainer, self.path)
        self.saved_step = trainer.global_step
        log.debug("wrote %s at step %d", self.path, trainer.global_step)
        return self.path

    def _save_if_new(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run:  # a wiring check, like Lightning's own checkpoints
            return
        if trainer.global_step > 0 and trainer.global_step != self.saved_step:
            self.save(trainer)

    # ------------------------------------------------------------------ signals
    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None:  # second signal: the usual behaviour, at once
            self._restore_handlers()
            raise KeyboardInterrupt
        self.stop_signal = signum
        # Lightning chains its own SIGTERM handler with this one and would stop at the end of the step, after
        # the LR-scheduler step, where a checkpoint does not resume exactly; this callback stops instead.
        connector = getattr(self._trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "received_sigterm"):
            connector.received_sigterm = False
        print(
            f"\n{signal.Signals(signum).name} received: finishing the current step and writing {self.path} "
            "(press Ctrl-C again to stop at once)",
            flush=True,
        )

    def _install_handlers(self) -> None:
        if not self.on_signal:
            return
        for signum in _SIGNALS.values():
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
            except ValueError:  # not the main thread (e.g. a notebook worker thread): keep the defaults
                return

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            try:
                signal.signal(signum, handler)
            except ValueError:
                pass
        self._previous_handlers.clear()

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        requested = self.stop_signal is not None
        if trainer.world_size > 1:  # every rank must stop at the same step
            requested = bool(trainer.strategy.reduce_boolean_decision(requested, all=False))
            if requested and self.stop_signal is None:
                self.stop_signal = int(signal.SIGTERM)
        return requested

    def _stop(self, trainer: L.Trainer) -> None:
        self._save_if_new(trainer)
        signum = self.stop_signal or int(signal.SIGINT)
        raise RunInterrupted(signum, self.path if self.path.exists() else None)

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_signal = None
        self._trainer = trainer
        self.saved_step = trainer.global_step  # a resumed run starts with its checkpoint's step saved
        self._install_handlers()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._stop_requested(trainer):
            self._stop(trainer)
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._save_if_new(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_if_new(trainer)
        if self._stop_requested(trainer):
            self._stop(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._stop_requested(trainer):
            self._stop(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
        if isinstance(exception, RunInterrupted) or not self.save_on_exception:
            return
        if trainer.world_size > 1:
            log.warning(
                "training failed under %d processes: not writing %s (a collective save could hang)",
                trainer.world_size,
                self.path,
            )
            return
        try:
            before = self.saved_step
            self._save_if_new(trainer)
            if self.saved_step != before:
                log.error("training failed at step %d; wrote %s", trainer.global_step, self.path)
        except Exception:  # never hide the original error
            log.exception("could not write %s after the failure", self.path)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_if_new(trainer)
        self._restore_handlers()
        self._trainer = None

    def state_dict(self) -> dict[str, Any]:
        return {"every_n_steps": self.every_n_steps}
