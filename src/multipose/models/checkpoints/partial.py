"""Partial loading: copy what fits from a checkpoint into a module and report the rest (``init_from``,
``backbone.init``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multipose.models.checkpoints.common import CheckpointLayoutError, StateDict, Tensor, compact_keys
from multipose.models.checkpoints.detect import convert_loaded, detect_format
from multipose.models.checkpoints.hf import convert_hf, read_hf_config
from multipose.models.checkpoints.mae import mae_to_backbone, split_dense_fc2
from multipose.models.checkpoints.official import guess_grid
from multipose.models.checkpoints.read import read_checkpoint, unwrap_state_dict
from multipose.models.vit import resize_pos_embed, token_grid


@dataclass
class LoadReport:
    """What a non-strict load did: target keys left at their init, source keys not used, keys skipped because
    their shapes differ (``key: source shape -> target shape``), and source keys dropped by the mapping."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self, title: str) -> str:
        lines = [title]
        for label, keys in (
            ("missing (kept init)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape mismatch (skipped)", self.mismatched),
            ("dropped by mapping", self.dropped),
        ):
            lines.append(
                f"  {label:<25}: {len(keys)}" + (f"  {', '.join(compact_keys(keys))}" if keys else "")
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def load_partial_state(module: torch.nn.Module, sd: StateDict) -> LoadReport:
    """``load_state_dict(strict=False)`` that also skips (and reports) keys whose shapes differ."""
    target = module.state_dict()
    usable = {k: v for k, v in sd.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    mismatched = [
        f"{k}: {tuple(v.shape)} -> {tuple(target[k].shape)}"
        for k, v in sd.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    result = module.load_state_dict(usable, strict=False)
    return LoadReport(
        missing=sorted(set(result.missing_keys) - {m.split(":")[0] for m in mismatched}),
        unexpected=sorted(k for k in sd if k not in target),
        mismatched=mismatched,
    )


def _source_backbone(
    path: str | Path, num_heads: int | None, field: str | None
) -> tuple[StateDict, dict[str, Any], str, list[str]]:
    """Backbone weights (official keys, no prefix) of any supported file, its backbone config (None for MAE),
    the format and the keys dropped on the way."""
    obj = read_checkpoint(path, field=field)
    p = f"{field}={path}" if field else str(path)
    fmt = detect_format(obj, p)
    if fmt == "mae":
        return unwrap_state_dict(obj, p), {}, fmt, []
    if fmt == "hf":
        result = convert_hf(
            unwrap_state_dict(obj, p), p, hf_config=read_hf_config(path), expert=None, num_heads=num_heads
        )
    else:  # attention heads are not in the weights: the target's count is what matters here
        result = convert_loaded(obj, p, fmt, num_heads=num_heads)
    sd = {k[len("backbone.") :]: v for k, v in result.state_dict.items() if k.startswith("backbone.")}
    heads = sorted(k for k in result.state_dict if not k.startswith("backbone."))
    return sd, result.model_config["backbone"], fmt, result.dropped + heads


def load_backbone_init(
    backbone: torch.nn.Module, path: str | Path, *, verbose: bool = True, field: str | None = "backbone.init"
) -> LoadReport:
    """Initialise a :class:`~multipose.models.vit.ViTPoseBackbone` from pretrained weights (``backbone.init``).

    Sources: MAE pretraining weights (the official ViTPose recipe), or the backbone of any ViTPose / ViTPose++ /
    Hugging Face / multipose / Lightning checkpoint. The position embedding is resized bicubically (cls slot
    kept) to the backbone's grid. A dense source FFN initialises a PS-FFN as the official loader does (shared
    ``fc2`` = first C-p rows, every expert = the last p rows) and I-FFN / IS-FFN through their
    ``init_from_dense``. MAE ``norm`` is not mapped to ``last_norm`` (official behaviour). Missing / unexpected
    / skipped keys are returned and printed when ``verbose``. ``field`` names the option in error messages.
    """
    sd, src_cfg, fmt, dropped = _source_backbone(path, getattr(backbone, "num_heads", None), field)
    p = str(path)
    grid = tuple(backbone.grid_size)
    ffn = getattr(backbone, "ffn", "shared")
    num_experts = int(getattr(backbone, "num_experts", 1))
    part = getattr(backbone, "part_features", None)
    src_ps = any(".mlp.experts." in k for k in sd)
    notes: list[str] = []
    if "pos_embed" in sd and fmt != "mae":  # MAE: mae_to_backbone resizes from its square grid
        pos = sd["pos_embed"]
        n = pos.shape[1] - 1
        src_grid = token_grid(tuple(src_cfg["img_size"]), 16) if src_cfg.get("img_size") else None
        if src_grid is None or src_grid[0] * src_grid[1] != n:
            side = int(round(math.sqrt(n)))
            src_grid = (side, side) if side * side == n else guess_grid(n)
        if src_grid is None:
            raise CheckpointLayoutError(f"{p}: cannot tell the token grid of pos_embed {tuple(pos.shape)}")
        if tuple(src_grid) != grid:
            sd["pos_embed"] = resize_pos_embed(pos, src_grid, grid).clone()
            notes.append(f"pos_embed resized bicubically {src_grid[0]}x{src_grid[1]} -> {grid[0]}x{grid[1]}")
    if fmt == "mae":
        sd, mae_dropped, mae_notes = mae_to_backbone(
            sd, grid, part_features=part if ffn == "ps" else None, num_experts=num_experts, path=p
        )
        dropped += mae_dropped
        notes += mae_notes
    elif ffn == "ps" and not src_ps:
        sd = split_dense_fc2(sd, part, num_experts, p)
        notes.append(f"{num_experts} experts initialised from the last {part} fc2 rows of every block")
    elif src_ps and ffn != "ps":
        raise CheckpointLayoutError(
            f"{p}: the source backbone has PS-FFN experts (mlp.experts.*) but the target ffn is {ffn!r}; "
            f"merge the source for one task first (PoseModel.merge_experts) or use ffn=ps"
        )
    dense_mlps: dict[int, dict[str, Tensor]] = {}
    if ffn in ("independent", "shared_independent"):
        for key in [k for k in sd if re.match(r"^blocks\.\d+\.mlp\.fc[12]\.", k)]:
            i = int(key.split(".")[1])
            dense_mlps.setdefault(i, {})[key.split(".mlp.")[1]] = sd.pop(key)
    report = load_partial_state(backbone, sd)
    if dense_mlps:
        for i, dense in sorted(dense_mlps.items()):
            backbone.blocks[i].mlp.init_from_dense(dense)
        filled = {f"blocks.{i}.mlp." for i in dense_mlps}
        report.missing = [k for k in report.missing if not any(k.startswith(f) for f in filled)]
        notes.append(
            f"{ffn} FFNs of {len(dense_mlps)} blocks initialised from the dense FFN (init_from_dense)"
        )
    report.dropped = dropped
    report.notes = notes
    if verbose:
        print(report.summary(f"backbone init from {p} (format {fmt}):"))
    return report
