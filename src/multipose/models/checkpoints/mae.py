"""MAE pretraining weights (``blocks.*`` without prefix, ``pos_embed`` on a square grid) -> a backbone-only
multipose checkpoint, and the dense -> PS-FFN initialisation of the official loader (vitpose.md section 1.3)."""

from __future__ import annotations

import math
import re

from multipose.models.checkpoints.common import CheckpointLayoutError, ConversionResult, StateDict
from multipose.models.checkpoints.official import (
    _BACKBONE_KEY,
    backbone_config_from_official,
    make_model_config,
)
from multipose.models.vit import resize_pos_embed, token_grid

_MAE_DROP = re.compile(r"^(cls_token|mask_token|norm\.|fc_norm\.|head\.|decoder_|decoder\.|dist_token)")


def mae_to_backbone(
    sd: StateDict,
    grid: tuple[int, int],
    *,
    part_features: int | None = None,
    num_experts: int = 1,
    path: str = "<checkpoint>",
) -> tuple[StateDict, list[str], list[str]]:
    """MAE weights -> official backbone keys (no prefix) for a target grid and FFN.

    - ``pos_embed`` (1, 1+s*s, C): cls row kept, patch rows resized bicubically to ``grid`` (vitpose.md §1.3).
    - For a ps-FFN target (``part_features`` set): each ``mlp.experts.k`` gets the LAST ``part_features`` rows of
      the dense ``fc2`` (weight and bias) and the shared ``fc2`` keeps the first ``C - part_features`` rows.
    - Dropped (returned): cls/mask tokens, ``norm``/``fc_norm`` (not mapped to ``last_norm``, as in the
      official loader), classifier ``head``, ``decoder_*``.
    Returns (state dict, dropped keys, notes).
    """
    out: StateDict = {}
    dropped: list[str] = []
    notes: list[str] = []
    unknown: list[str] = []
    for key, value in sd.items():
        if _MAE_DROP.match(key):
            dropped.append(key)
        elif key == "pos_embed":
            src = int(round(math.sqrt(value.shape[1] - 1)))
            if value.ndim != 3 or src * src != value.shape[1] - 1:
                raise CheckpointLayoutError(
                    f"{path}: pos_embed {tuple(value.shape)} is not (1, 1 + s*s, C) on a square MAE grid"
                )
            out[key] = resize_pos_embed(value, (src, src), grid).clone()
            if (src, src) != tuple(grid):
                notes.append(
                    f"pos_embed resized bicubically {src}x{src} -> {grid[0]}x{grid[1]} (cls row kept)"
                )
        elif _BACKBONE_KEY.match(key) and ".mlp.experts." not in key:
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointLayoutError(f"{path}: keys not in the MAE/ViT layout: {sorted(unknown)[:10]}")
    if part_features:
        out = split_dense_fc2(out, part_features, num_experts, path)
        notes.append(
            f"{num_experts} experts initialised from the last {part_features} fc2 rows of every block"
        )
    if "last_norm.weight" not in out:
        notes.append(
            "MAE norm is not mapped to last_norm (as in the official loader): last_norm keeps its init"
        )
    return out, dropped, notes


def split_dense_fc2(
    sd: StateDict, part_features: int, num_experts: int, path: str = "<checkpoint>"
) -> StateDict:
    """Dense FFN -> PS-FFN init (official ``load_checkpoint`` for ViTMoE): for every block the shared ``fc2``
    keeps output rows ``[:C-p]`` and each of the ``num_experts`` experts gets rows ``[C-p:]`` (weight, bias)."""
    out: StateDict = {}
    for key, value in sd.items():
        m = re.match(r"^(blocks\.\d+\.mlp)\.fc2\.(weight|bias)$", key)
        if m is None:
            out[key] = value
            continue
        width = value.shape[0]
        if not 0 < part_features < width:
            raise CheckpointLayoutError(
                f"{path}: part_features {part_features} does not fit {key} with {width} rows"
            )
        out[key] = value[: width - part_features].clone()
        for k in range(num_experts):
            out[f"{m.group(1)}.experts.{k}.{m.group(2)}"] = value[width - part_features :].clone()
    return out


def convert_mae(
    sd: StateDict,
    path: str = "<checkpoint>",
    *,
    img_size: tuple[int, int] = (256, 192),
    num_heads: int | None = None,
    ffn: str = "shared",
    num_experts: int = 1,
    part_features: int | None = None,
    size_name: str | None = None,
) -> ConversionResult:
    """MAE pretraining weights -> a backbone-only multipose checkpoint for the given target input/FFN."""
    if "patch_embed.proj.weight" not in sd:
        raise CheckpointLayoutError(
            f"{path}: MAE weights need patch_embed.proj.weight (found {sorted(sd)[:8]})"
        )
    embed_dim, patch = sd["patch_embed.proj.weight"].shape[0], sd["patch_embed.proj.weight"].shape[-1]
    if ffn == "ps":
        part_features = part_features or embed_dim // 4
    elif ffn != "shared":
        raise CheckpointLayoutError(f"{path}: MAE conversion supports ffn 'shared' or 'ps', got {ffn!r}")
    else:
        part_features, num_experts = None, 1
    grid = token_grid(tuple(img_size), patch)
    out, dropped, notes = mae_to_backbone(
        sd, grid, part_features=part_features, num_experts=num_experts, path=path
    )
    bb_cfg = backbone_config_from_official(
        out, path, num_heads=num_heads, img_size=tuple(img_size), name=size_name
    )
    return ConversionResult(
        "mae",
        make_model_config(bb_cfg, {}, path),
        {f"backbone.{k}": v for k, v in out.items()},
        path,
        dropped,
        notes,
    )
