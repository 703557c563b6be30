"""The runs of a comparison: one continuation per (arm, seed) from the stage-0 checkpoint, or the stage-0 run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from multipose.compare.identity import config_key, override_key
from multipose.compare.protocol import BATCH_DIGEST_TARGET, PROTOCOL_KEYS, STAGE0_PRESETS, ProtocolError

__all__ = ["RunPlan", "plan_continuation", "plan_stage0", "stage0_checkpoint", "steps_per_epoch"]


@dataclass
class RunPlan:
    """One training run of the protocol: ``python -m multipose.train <overrides> hydra.run.dir=<run_dir>``."""

    arm: str
    seed: int
    overrides: list[str]
    key: str
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"

    def command(self, python: str = sys.executable, resume_from: Path | None = None) -> list[str]:
        extra = [f"ckpt_path={resume_from}"] if resume_from is not None else []
        return [python, "-m", "multipose.train", *self.overrides, *extra, f"hydra.run.dir={self.run_dir}"]


def _refuse_protocol_keys(overrides: Sequence[str], where: str) -> None:
    for o in overrides:
        if override_key(o) in PROTOCOL_KEYS:
            raise ProtocolError(
                f"{where} sets {override_key(o)!r} ({o}), which the comparison protocol sets itself (start "
                "checkpoint, seed, run length and validation cadence are the same for both arms); remove it "
                "and use --stage0 / --seeds / --steps / --epochs instead"
            )


def steps_per_epoch(steps: int, epochs: int) -> int:
    if steps <= 0 or epochs <= 0:
        raise ProtocolError(f"--steps ({steps}) and --epochs ({epochs}) must be positive")
    if steps % epochs:
        raise ProtocolError(
            f"--steps {steps} is not a multiple of --epochs {epochs}; every epoch has the same number of batches, "
            "so choose steps = epochs x batches per epoch"
        )
    return steps // epochs


def plan_continuation(
    arm: str,
    seed: int,
    stage0: str | os.PathLike,
    steps: int,
    epochs: int,
    out_dir: str | os.PathLike,
    shared: Sequence[str] = (),
    base: Sequence[str] = (),
    method: Sequence[str] = (),
) -> RunPlan:
    """The run of ``arm`` (``baseline`` or the method's name) with ``seed``: weights from ``stage0``
    (``init_from``, weights only), ``steps`` optimiser steps in ``epochs`` equal epochs, one validation at the
    end, ``shared + base + method`` overrides, and the :class:`BatchDigest` callback. The run directory is
    ``<out_dir>/runs/<arm>_seed<seed>_<key[:10]>``."""
    _refuse_protocol_keys(shared, "--shared")
    _refuse_protocol_keys(base, "--base")
    _refuse_protocol_keys(method, "--method")
    stage0 = Path(stage0)
    if not stage0.is_file():
        raise ProtocolError(
            f"stage-0 checkpoint {stage0} does not exist; give --stage0 <file.ckpt> or omit it"
        )
    per_epoch = steps_per_epoch(steps, epochs)
    overrides = [
        *shared,
        *base,
        *method,
        f"init_from={stage0.resolve()}",
        f"seed={int(seed)}",
        f"trainer.max_epochs={epochs}",
        f"data.steps_per_epoch={per_epoch}",
        f"trainer.check_val_every_n_epoch={epochs}",
        f"+callbacks.batch_digest._target_={BATCH_DIGEST_TARGET}",
    ]
    key = config_key(overrides, {"init_from": stage0})
    run_dir = Path(out_dir).resolve() / "runs" / f"{arm}_seed{int(seed)}_{key[:10]}"
    return RunPlan(arm, int(seed), overrides, key, run_dir)


def plan_stage0(
    preset: str, cache_dir: str | os.PathLike, seed: int = 0, shared: Sequence[str] = ()
) -> RunPlan:
    """The stage-0 training run of ``preset`` (:data:`STAGE0_PRESETS`), cached under
    ``<cache_dir>/stage0_<preset>_<key[:10]>``: the key is the composed config, not a file name."""
    if preset not in STAGE0_PRESETS:
        raise ProtocolError(f"--stage0-preset {preset!r} is unknown; choose one of {sorted(STAGE0_PRESETS)}")
    _refuse_protocol_keys(shared, "--shared")
    overrides = [*shared, *STAGE0_PRESETS[preset], f"seed={int(seed)}"]
    key = config_key(overrides)
    run_dir = Path(cache_dir).resolve() / f"stage0_{preset}_{key[:10]}"
    return RunPlan(f"stage0_{preset}", int(seed), overrides, key, run_dir)


def stage0_checkpoint(run_dir: str | os.PathLike) -> Path:
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise ProtocolError(
            f"the stage-0 run {run_dir} finished but wrote no checkpoints/last.ckpt; do not pass callbacks=none "
            "in --shared"
        )
    return ckpt
