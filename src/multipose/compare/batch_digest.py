"""The callback that proves both arms of a seed trained on the same batches."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L

from multipose.compare.protocol import DIGEST_FILE
from multipose.utils.run import write_json_atomic

__all__ = ["BatchDigest"]


class BatchDigest(L.Callback):
    """Hash of every training batch this rank saw (images, dataset indices, annotation ids, in order) and the
    final optimiser step, written to ``<run dir>/batch_digest.json`` when training ends. Its state is in the
    checkpoint, so a resumed run's digest covers the whole run."""

    FIELDS = ("dataset_idx", "ann_id", "image")

    def __init__(self, filename: str = DIGEST_FILE) -> None:
        self.filename = filename
        self.batches: list[str] = []

    @classmethod
    def batch_hash(cls, batch: Mapping[str, Any]) -> str:
        h = hashlib.sha256()
        for name in cls.FIELDS:
            t = batch[name]
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(self.batch_hash(batch))

    def summary(self, global_step: int) -> dict[str, Any]:
        return {
            "batches": len(self.batches),
            "global_step": int(global_step),
            "digest": hashlib.sha256("".join(self.batches).encode()).hexdigest(),
        }

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            write_json_atomic(
                Path(trainer.default_root_dir) / self.filename, self.summary(trainer.global_step)
            )

    def state_dict(self) -> dict[str, Any]:
        return {"batches": list(self.batches)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = list(state_dict.get("batches", []))
