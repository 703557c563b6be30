"""Hugging Face transformers ``VitPoseForPoseEstimation`` / ``VitPoseBackbone`` state dicts -> multipose layout
(keys renamed to the official ones, q/k/v fused; vitpose.md section 1.7)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from multipose.models.checkpoints.common import CheckpointLayoutError, ConversionResult, StateDict, Tensor
from multipose.models.checkpoints.official import (
    _BACKBONE_KEY,
    _HEAD_KEY,
    _check_known,
    backbone_config_from_official,
    head_config_from_official,
    make_model_config,
)

_HF_LAYER_RENAMES = (
    ("attention.output.dense.", "attn.proj."),
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
)
_HF_HEAD_RENAMES = {
    "deconv1.": "deconv_layers.0.",
    "batchnorm1.": "deconv_layers.1.",
    "deconv2.": "deconv_layers.3.",
    "batchnorm2.": "deconv_layers.4.",
    "conv.": "final_layer.",
}


def hf_to_official(sd: StateDict, path: str = "<checkpoint>") -> tuple[StateDict, StateDict]:
    """Hugging Face VitPose keys -> official backbone keys (no prefix) and official head keys (no prefix).

    q/k/v are fused into ``attn.qkv`` in q, k, v row order (vitpose.md §1.7). Returns (backbone, head).
    """
    prefix = "backbone." if any(k.startswith("backbone.embeddings.") for k in sd) else ""
    backbone: StateDict = {}
    head: StateDict = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if key.startswith("head."):
            sub = key[len("head.") :]
            for old, new in _HF_HEAD_RENAMES.items():
                if sub.startswith(old):
                    head[new + sub[len(old) :]] = value
                    break
            else:
                unknown.append(key)
            continue
        if not key.startswith(prefix):
            unknown.append(key)
            continue
        k = key[len(prefix) :]
        if k.startswith("embeddings.patch_embeddings.projection."):
            backbone["patch_embed.proj." + k.rsplit(".", 1)[1]] = value
        elif k == "embeddings.position_embeddings":
            backbone["pos_embed"] = value
        elif k.startswith("layernorm."):
            backbone["last_norm." + k.rsplit(".", 1)[1]] = value
        elif m := re.match(r"^encoder\.layer\.(\d+)\.(.+)$", k):
            i, rest = int(m.group(1)), m.group(2)
            if q := re.match(r"^attention\.attention\.(query|key|value)\.(weight|bias)$", rest):
                qkv.setdefault((i, q.group(2)), {})[q.group(1)] = value
            elif e := re.match(r"^mlp\.experts\.(\d+)\.(weight|bias)$", rest):
                backbone[f"blocks.{i}.mlp.experts.{e.group(1)}.{e.group(2)}"] = value
            else:
                for old, new in _HF_LAYER_RENAMES:
                    if rest.startswith(old):
                        backbone[f"blocks.{i}.{new}{rest[len(old) :]}"] = value
                        break
                else:
                    unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointLayoutError(
            f"{path}: keys not in the Hugging Face VitPose layout: {sorted(unknown)[:10]}"
        )
    for (i, kind), parts in sorted(qkv.items()):
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise CheckpointLayoutError(
                f"{path}: {prefix}encoder.layer.{i}.attention.attention.{{{','.join(missing)}}}.{kind} missing; "
                f"cannot fuse q/k/v"
            )
        backbone[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    return backbone, head


def merge_experts_state(sd: StateDict, task: int, path: str = "<checkpoint>") -> tuple[StateDict, list[str]]:
    """Fold expert ``task`` of a PS-FFN backbone state dict (official keys, no prefix) into a dense ``fc2``:
    ``fc2 = cat([fc2, experts[task]], 0)`` for weight and bias (shared rows first). Returns the dense state and
    the expert keys it removed (prefixed ``backbone.``)."""
    experts = sorted({int(k.split(".")[4]) for k in sd if re.match(r"^blocks\.0\.mlp\.experts\.\d+\.", k)})
    if task not in experts:
        raise CheckpointLayoutError(
            f"{path}: expert {task} requested but the checkpoint has experts {experts}"
        )
    out: StateDict = {}
    removed: list[str] = []
    for key, value in sd.items():
        if m := re.match(r"^(blocks\.\d+\.mlp)\.experts\.(\d+)\.(weight|bias)$", key):
            removed.append("backbone." + key)
        elif m := re.match(r"^(blocks\.\d+\.mlp)\.fc2\.(weight|bias)$", key):
            part = sd.get(f"{m.group(1)}.experts.{task}.{m.group(2)}")
            if part is None:
                raise CheckpointLayoutError(f"{path}: {m.group(1)}.experts.{task}.{m.group(2)} is missing")
            out[key] = torch.cat([value, part], dim=0)
        else:
            out[key] = value
    return out, removed


def read_hf_config(path: str | Path) -> dict[str, Any] | None:
    """The transformers ``config.json`` next to (or inside, for a directory) ``path``, if there is one."""
    p = Path(path)
    cfg_file = p / "config.json" if p.is_dir() else p.parent / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointLayoutError(f"{cfg_file}: not valid JSON ({err})") from err
    return cfg if cfg.get("model_type") in ("vitpose", "vitpose_backbone") else None


def convert_hf(
    sd: StateDict,
    path: str = "<checkpoint>",
    *,
    hf_config: dict[str, Any] | None = None,
    head_names: list[str] | None = None,
    skeletons: list[str] | None = None,
    num_heads: int | None = None,
    img_size: tuple[int, int] | None = None,
    size_name: str | None = None,
    expert: int | None = 0,
) -> ConversionResult:
    """Hugging Face ``VitPoseForPoseEstimation`` (or bare ``VitPoseBackbone``) -> multipose layout.

    HF keeps one head (the COCO one, even for VitPose+); it is named ``coco`` with skeleton ``coco`` unless
    ``head_names`` / ``skeletons`` say otherwise. Attention heads, LayerNorm eps and image size come from the
    ``config.json`` next to the file when present (else ``num_heads`` / the released-size table).

    VitPose+ (experts): HF pairs every ``dataset_index`` with that one head, so by default expert ``expert``
    (HF ``dataset_index``, 0 = COCO) is merged into a dense ``fc2`` (shared rows first, as ``model_split.py``)
    and the model equals transformers' output for that index. ``expert=None`` keeps all experts (a routed
    backbone with fewer heads than experts, e.g. for :func:`load_backbone_init`).
    """
    backbone, head = hf_to_official(sd, path)
    dropped: list[str] = []
    notes: list[str] = []
    eps = 1e-6
    if hf_config is not None:
        bcfg = hf_config.get("backbone_config", hf_config) or {}
        num_heads = num_heads or bcfg.get("num_attention_heads")
        eps = float(bcfg.get("layer_norm_eps", 1e-12))
        if img_size is None and bcfg.get("image_size") is not None:
            img_size = tuple(bcfg["image_size"])
        out_indices = bcfg.get("out_indices")
        depth = bcfg.get("num_hidden_layers")
        if out_indices and depth and list(out_indices)[-1] not in (depth, -1):
            raise CheckpointLayoutError(
                f"{path}: config.json takes the head input from layer {list(out_indices)[-1]} of {depth}; "
                f"multipose heads read the last layer only"
            )
        notes.append(f"dims from config.json (num_heads {num_heads}, layer_norm_eps {eps:g})")
        if eps != 1e-6:
            notes.append(
                f"config.json has layer_norm_eps {eps:g}; multipose uses the official 1e-6 (outputs differ by "
                f"float rounding only)"
            )
    _check_known(list(backbone), _BACKBONE_KEY, path, "backbone (after HF renaming)")
    if expert is not None and "blocks.0.mlp.experts.0.weight" in backbone:
        backbone, merged_away = merge_experts_state(backbone, expert, path)
        dropped.extend(merged_away)
        notes.append(f"VitPose+ expert {expert} (HF dataset_index {expert}) merged into a dense fc2")
    bb_cfg = backbone_config_from_official(
        backbone, path, num_heads=num_heads, img_size=img_size, name=size_name
    )
    out: StateDict = {f"backbone.{k}": v for k, v in backbone.items()}
    heads: dict[str, Any] = {}
    if head:
        _check_known(list(head), _HEAD_KEY, path, "head (after HF renaming)")
        name = head_names[0] if head_names else "coco"
        skel = skeletons[0] if skeletons else ("coco" if not head_names else name)
        heads[name] = head_config_from_official(head, path, "head.", name, skel)
        out.update({f"heads.{name}.{k}": v for k, v in head.items()})
        if bb_cfg["ffn"] == "ps":
            notes.append(
                "HF keeps only the COCO head; experts kept: this model needs one head per expert to load"
            )
    return ConversionResult("hf", make_model_config(bb_cfg, heads, path), out, path, dropped, notes)
