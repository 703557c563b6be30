"""multipose's own files: converted checkpoints (:func:`save_multipose`) and Lightning ``.ckpt`` files of
multipose runs (:func:`read_multipose`).

A converted checkpoint is a plain dictionary::

    {"multipose_version": "0.1.0",          # package version that wrote it
     "format_version": "1",                 # version of this layout
     "model_config": {...},                 # ModelConfig.to_dict() (multipose.models.model_config)
     "source": {"format": "vitpose++", "file": "vitpose+_base.pth"},
     "state_dict": {"backbone.blocks.0.attn.qkv.weight": Tensor, ..., "heads.coco.final_layer.weight": ...}}

written with ``torch.save`` or, when the file name ends in ``.safetensors``, as safetensors tensors with
everything else as JSON under the metadata key ``"multipose"``; written atomically (temporary file + rename).
A Lightning checkpoint keeps the same dict in ``hyper_parameters["model_config"]`` and the weights as
``state_dict`` keys ``model.*``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from multipose.models.checkpoints.common import CheckpointLayoutError, StateDict
from multipose.models.checkpoints.read import SAFETENSORS_METADATA_KEY, is_state_dict, read_checkpoint
from multipose.models.model_config import ModelConfig, ModelConfigError

MULTIPOSE_FORMAT_VERSION = "1"


def save_multipose(
    path: str | Path,
    model_config: dict[str, Any] | ModelConfig,
    state_dict: StateDict,
    source: dict | None = None,
) -> Path:
    """Write a multipose checkpoint: ``.safetensors`` (tensors + JSON metadata) or anything else via torch.save.
    The file appears complete or not at all (written to a temporary file in the same folder, then renamed)."""
    from multipose import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    info = {
        "multipose_version": __version__,
        "format_version": MULTIPOSE_FORMAT_VERSION,
        "model_config": ModelConfig.from_dict(model_config).to_dict(),
        "source": source or {},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata={SAFETENSORS_METADATA_KEY: json.dumps(info)})
        else:
            torch.save({**info, "state_dict": tensors}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_multipose(
    obj: dict[str, Any], path: str | Path = "<checkpoint>"
) -> tuple[dict[str, Any], StateDict]:
    """(model_config, state dict) from a multipose dict or a Lightning checkpoint of a multipose run.

    Lightning: the model config is ``hyper_parameters["model_config"]`` (plain containers) and the model's
    weights are the ``state_dict`` keys starting with ``model.`` (other keys, e.g. loss modules, are ignored).
    The model config is validated and returned in today's dict form (older layouts are read too).
    """
    if "multipose_version" in obj:
        cfg, sd = obj.get("model_config"), obj.get("state_dict")
    elif isinstance(obj.get("hyper_parameters"), dict):
        cfg = obj["hyper_parameters"].get("model_config")
        if cfg is None:
            raise CheckpointLayoutError(
                f"{path}: Lightning checkpoint without hyper_parameters['model_config'] "
                f"(found {sorted(obj['hyper_parameters'])[:10]}); it was not written by the multipose trainer"
            )
        sd = {
            k[len("model.") :]: v for k, v in (obj.get("state_dict") or {}).items() if k.startswith("model.")
        }
        if not sd:
            raise CheckpointLayoutError(f"{path}: no 'model.*' keys in the Lightning state_dict")
    else:
        raise CheckpointLayoutError(
            f"{path}: not a multipose or Lightning checkpoint (top-level keys {sorted(obj)[:10]})"
        )
    try:
        cfg = ModelConfig.from_dict(cfg).to_dict()
    except (ModelConfigError, TypeError, ValueError) as err:
        raise CheckpointLayoutError(f"{path}: its model_config does not describe a model: {err}") from None
    if not is_state_dict(sd):
        raise CheckpointLayoutError(f"{path}: 'state_dict' is missing or holds non-tensor values")
    return cfg, sd


def check_training_checkpoint(path: str | Path, field: str = "ckpt_path") -> dict[str, Any]:
    """Pre-flight check of a Lightning checkpoint before Lightning loads it (``ckpt_path`` of train and eval):
    read safely (tensors memory-mapped, so large files cost little) and require a multipose run's layout.
    Returns its model config; raises a :class:`~multipose.models.checkpoints.common.CheckpointError` naming
    ``field`` and the file otherwise."""
    obj = read_checkpoint(path, field=field, mmap=True)
    label = f"{field}={path}"
    if not isinstance(obj.get("hyper_parameters"), dict) or "state_dict" not in obj:
        kind = "a converted multipose file" if "multipose_version" in obj else "a checkpoint of another kind"
        raise CheckpointLayoutError(
            f"{label}: {kind} (top-level keys {sorted(obj)[:10]}), not a Lightning .ckpt written by "
            f"multipose.train; weights of other files load with init_from=<file> (training) or "
            f"multipose.convert"
        )
    cfg, _ = read_multipose(obj, label)
    return cfg
