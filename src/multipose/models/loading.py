"""Build a ready-to-use :class:`~multipose.models.pose_model.PoseModel` from a checkpoint file.

``load_pose_model(path)`` accepts a multipose checkpoint (``torch.save`` dict or ``.safetensors``, see
:mod:`multipose.models.checkpoints.native`), a Lightning ``.ckpt`` written by ``multipose.train`` (model config in
``hyper_parameters["model_config"]``, weights under ``model.``), and — converted on the fly — official
ViTPose / ViTPose++ ``.pth`` files and Hugging Face VitPose state dicts. Every file is read by
:func:`multipose.models.checkpoints.read_checkpoint`: loading never executes pickled code, and a bad file gets
one clear error naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from multipose.models.build import model_from_config
from multipose.models.checkpoints import (
    CheckpointError,
    ConversionResult,
    LoadReport,
    compact_keys,
    convert_checkpoint,
    load_backbone_init,
    load_partial_state,
)
from multipose.models.pose_model import PoseModel

__all__ = ["load_pose_model", "build_from_result", "load_weights_into", "load_backbone_init", "LoadReport"]

log = logging.getLogger(__name__)


def build_from_result(result: ConversionResult) -> PoseModel:
    """Build the model described by ``result.model_config`` and load ``result.state_dict`` strictly.

    Raises :class:`CheckpointError` naming the file and the keys when the weights do not fit the model.
    """
    if not result.model_config.get("heads"):
        raise CheckpointError(
            f"{result.source}: the checkpoint has no heads (backbone-only weights, e.g. MAE); use it as "
            f"backbone.init=<path> (load_backbone_init) instead of loading a pose model"
        )
    try:
        model = model_from_config(result.model_config)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(
            f"{result.source}: cannot build the model from its model_config: {err}"
        ) from err
    target = model.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in result.state_dict.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    missing = sorted(set(target) - set(result.state_dict))
    unexpected = sorted(set(result.state_dict) - set(target))
    # BatchNorm's step counter is not a weight (it only matters with momentum=None); files written without it
    # (older PyTorch, exporters that drop buffers) load with the counter at 0
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    if counters and not (mismatched or unexpected or len(counters) < len(missing)):
        result.state_dict.update({k: torch.zeros_like(target[k]) for k in counters})
        result.notes.append(f"{len(counters)} BatchNorm num_batches_tracked counters absent: set to 0")
        missing = []
    if mismatched or missing or unexpected:
        parts = []
        if mismatched:
            parts.append(f"shape mismatches {mismatched[:6]}")
        if missing:
            parts.append(f"missing keys {compact_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {compact_keys(unexpected)}")
        raise CheckpointError(
            f"{result.source}: weights do not fit the model ({result.format}): " + "; ".join(parts)
        )
    model.load_state_dict(result.state_dict, strict=True)
    return model


def load_pose_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    fmt: str = "auto",
    verbose: bool = False,
    **convert_kwargs: Any,
) -> PoseModel:
    """Load a pose model for inference: built from the checkpoint's model config, weights loaded strictly,
    moved to ``device`` and put in eval mode. ``model.predict_heatmaps(images, skeleton=<name>)`` then gives
    ``[B, K, H/4, W/4]`` heatmaps for the head predicting that skeleton.

    ``fmt`` forces a source format (``auto`` detects it from the keys); ``convert_kwargs`` go to
    :func:`multipose.models.checkpoints.convert_checkpoint` (e.g. ``head_names``, ``num_heads``, ``img_size``
    for foreign checkpoints). ``verbose`` prints the conversion summary.
    """
    result = convert_checkpoint(path, fmt, **convert_kwargs)
    if verbose:
        print(result.summary())
    model = build_from_result(result)
    return model.to(device).eval()


def load_weights_into(
    model: torch.nn.Module, path: str | Path, *, verbose: bool = True, field: str | None = "init_from"
) -> LoadReport:
    """Warm-start ``model`` (a PoseModel) from any supported checkpoint, non-strict: matching keys are copied,
    keys with another shape are skipped, and missing / unexpected / skipped keys are reported (``init_from``).
    ``field`` names the option in error messages."""
    result = convert_checkpoint(path, field=field)
    report = load_partial_state(model, result.state_dict)
    report.dropped = list(result.dropped)
    report.notes = list(result.notes)
    text = report.summary(f"weights from {path} (format {result.format}):")
    if verbose:
        print(text)
    log.info(text)
    return report
