"""Which layout a checkpoint has (:func:`detect_format`) and the one entry point that converts any supported
file to the multipose layout (:func:`convert_checkpoint`).

Supported sources:

``multipose``  a file written by :func:`~multipose.models.checkpoints.native.save_multipose`.
``lightning``  a training checkpoint: ``hyper_parameters["model_config"]`` + ``state_dict`` keys ``model.*``.
``vitpose``    official ViTPose (mmcv dict, ``backbone.*`` + ``keypoint_head.*`` [+ ``associate_keypoint_heads.*``]).
``vitpose++``  official ViTPose++ (``backbone.blocks.i.mlp.experts.k`` + six heads).
``hf``         Hugging Face transformers ``VitPoseForPoseEstimation`` / ``VitPoseBackbone`` state dicts.
``mae``        MAE pretraining weights (``blocks.*`` without prefix, ``pos_embed`` on a square grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multipose.models.checkpoints.common import (
    FORMATS,
    CheckpointError,
    CheckpointLayoutError,
    ConversionResult,
)
from multipose.models.checkpoints.hf import convert_hf, read_hf_config
from multipose.models.checkpoints.mae import convert_mae
from multipose.models.checkpoints.native import read_multipose
from multipose.models.checkpoints.official import _has_live_experts, convert_official
from multipose.models.checkpoints.read import read_checkpoint, unwrap_state_dict


def detect_format(obj: dict[str, Any], path: str | Path = "<checkpoint>") -> str:
    """Return one of :data:`FORMATS` from the keys of a checkpoint read with :func:`read_checkpoint`."""
    if "multipose_version" in obj and "model_config" in obj:
        return "multipose"
    if "state_dict" in obj and isinstance(obj.get("hyper_parameters"), dict):
        return "lightning"
    sd = unwrap_state_dict(obj, path)
    keys = set(sd)
    if any(
        k.startswith("backbone.embeddings.") or k.startswith("embeddings.patch_embeddings.") for k in keys
    ):
        return "hf"
    if "backbone.patch_embed.proj.weight" in keys or any(k.startswith("backbone.blocks.") for k in keys):
        return "vitpose++" if _has_live_experts(sd, "backbone.") else "vitpose"
    if "patch_embed.proj.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return "mae"
    raise CheckpointLayoutError(
        f"{path}: unknown checkpoint layout. Expected official ViTPose keys (backbone.patch_embed.proj.weight, "
        f"keypoint_head.*), Hugging Face VitPose keys (backbone.embeddings.*), MAE keys (patch_embed.proj.weight, "
        f"blocks.*) or a multipose/Lightning checkpoint. First keys found: {sorted(keys)[:10]}. "
        f"Pass --format to force a layout."
    )


def convert_checkpoint(
    path: str | Path, fmt: str = "auto", *, field: str | None = None, **options: Any
) -> ConversionResult:
    """Read any supported checkpoint safely (:func:`read_checkpoint`) and return it in the multipose layout.
    ``field`` names the config option in error messages; ``options`` are those of :func:`convert_loaded`."""
    if fmt not in ("auto", *FORMATS):
        raise CheckpointError(f"unknown --format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    obj = read_checkpoint(path, field=field)
    label = f"{field}={path}" if field else str(path)
    detected = detect_format(obj, label) if fmt == "auto" else fmt
    hf_config = read_hf_config(path) if detected == "hf" else None
    return convert_loaded(obj, label, fmt, hf_config=hf_config, **options)


def convert_loaded(
    obj: dict[str, Any],
    path: str,
    fmt: str = "auto",
    *,
    head_names: list[str] | None = None,
    skeletons: list[str] | None = None,
    num_heads: int | None = None,
    img_size: tuple[int, int] | None = None,
    size_name: str | None = None,
    ffn: str = "shared",
    num_experts: int = 6,
    part_features: int | None = None,
    hf_expert: int | None = 0,
    hf_config: dict[str, Any] | None = None,
) -> ConversionResult:
    """Convert a checkpoint dict already read by :func:`read_checkpoint` (``path`` is for messages)."""
    if fmt not in ("auto", *FORMATS):
        raise CheckpointError(f"unknown --format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    p = str(path)
    detected = detect_format(obj, p) if fmt == "auto" else fmt
    if detected in ("multipose", "lightning"):
        cfg, sd = read_multipose(obj, p)
        ignored = [
            k for k in obj.get("state_dict", {}) if detected == "lightning" and not k.startswith("model.")
        ]
        notes = [
            "Lightning state_dict keys outside 'model.' (training-only modules) are not part of the model"
        ]
        return ConversionResult(detected, cfg, dict(sd), p, ignored, notes if ignored else [])
    sd = unwrap_state_dict(obj, p)
    if detected in ("vitpose", "vitpose++"):
        return convert_official(
            sd,
            p,
            fmt=None if fmt == "auto" else fmt,
            head_names=head_names,
            skeletons=skeletons,
            num_heads=num_heads,
            img_size=img_size,
            size_name=size_name,
        )
    if detected == "hf":
        return convert_hf(
            sd,
            p,
            hf_config=hf_config,
            head_names=head_names,
            skeletons=skeletons,
            num_heads=num_heads,
            img_size=img_size,
            size_name=size_name,
            expert=hf_expert,
        )
    return convert_mae(
        sd,
        p,
        img_size=img_size or (256, 192),
        num_heads=num_heads,
        ffn=ffn,
        num_experts=num_experts,
        part_features=part_features,
        size_name=size_name,
    )
