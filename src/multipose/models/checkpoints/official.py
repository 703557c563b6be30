"""Official ViTPose / ViTPose++ checkpoints (mmcv ``.pth``): key layout, dimensions read from the weights, and the
conversion to the multipose layout. The Hugging Face and MAE converters map their keys to this layout first.

Backbone keys are the official names (``patch_embed.proj``, ``pos_embed`` of shape ``(1, 1+h*w, C)`` with the
unused cls slot, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2,mlp.experts.k}``, ``last_norm``)
under ``backbone.``; head keys are the official head names (``deconv_layers.{0,1,3,4}``, ``final_layer``) under
``heads.<dataset name>.``. Head i uses expert i. Reference: vitpose.md sections 1.4, 2.2 and 3.3.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, OrderedDict
from typing import Any

from multipose.models.checkpoints.common import CheckpointLayoutError, ConversionResult, StateDict, Tensor
from multipose.models.model_config import BackboneConfig, HeadArch, HeadSpec, ModelConfig
from multipose.models.registry import BACKBONES, get_backbone_spec
from multipose.models.vit import token_grid

# ViTPose++ dataset order (expert index = head index): name, skeleton, K.  Reference: vitpose.md §2.2.
VITPOSE_PP_HEADS: tuple[tuple[str, str, int], ...] = (
    ("coco", "coco", 17),
    ("aic", "aic", 14),
    ("mpii", "mpii", 16),
    ("ap10k", "ap10k", 17),
    ("apt36k", "ap10k", 17),
    ("wholebody", "coco_wholebody", 133),
)
# Non-MoE multi-task / split checkpoints: heads are identified by their number of keypoints (§3.3).
HEAD_BY_NUM_KEYPOINTS: dict[int, tuple[str, str]] = {
    17: ("coco", "coco"),
    14: ("aic", "aic"),
    16: ("mpii", "mpii"),
    133: ("wholebody", "coco_wholebody"),
}
# Attention heads per embedding width (not stored in the weights): the registered sizes' (vit_tiny 3, ViTPose-S 12).
NUM_HEADS_BY_WIDTH: dict[int, int] = {s.embed_dim: s.num_heads for s in BACKBONES.values()}

# Official backbone / head parameter names (without prefix).
_BACKBONE_KEY = re.compile(
    r"^(pos_embed|patch_embed\.proj\.(weight|bias)|last_norm\.(weight|bias)|"
    r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|mlp\.experts\.\d+)\.(weight|bias))$"
)
_HEAD_KEY = re.compile(
    r"^(deconv_layers\.\d+\.(weight|bias|running_mean|running_var|num_batches_tracked)|final_layer\.(weight|bias))$"
)


def _has_live_experts(sd: StateDict, prefix: str) -> bool:
    """True for a real MoE checkpoint: experts present and fc2 narrower than C (split files keep dead experts)."""
    fc2 = sd.get(f"{prefix}blocks.0.mlp.fc2.weight")
    expert = sd.get(f"{prefix}blocks.0.mlp.experts.0.weight")
    if expert is None:
        return False
    width = (
        sd[f"{prefix}patch_embed.proj.weight"].shape[0] if f"{prefix}patch_embed.proj.weight" in sd else None
    )
    return fc2 is None or width is None or fc2.shape[0] < width


def guess_grid(num_tokens: int) -> tuple[int, int] | None:
    """Token grid of a 4:3 (H:W) input with ``num_tokens`` patches (192 -> 16x12), or None if not 4:3."""
    h = round(math.sqrt(num_tokens * 4 / 3))
    if h > 0 and num_tokens % h == 0 and 3 * h == 4 * (num_tokens // h):
        return h, num_tokens // h
    return None


def _resolve_img_size(
    pos_embed: Tensor, patch_size: int, img_size: tuple[int, int] | None, path: str, key: str
) -> tuple[int, int]:
    num_tokens = pos_embed.shape[1] - 1
    if img_size is not None:
        gh, gw = token_grid(tuple(img_size), patch_size)
        if gh * gw != num_tokens:
            raise CheckpointLayoutError(
                f"{path}: {key} has {num_tokens} patch rows but img_size {tuple(img_size)} gives a "
                f"{gh}x{gw} grid ({gh * gw}); pass the input size the checkpoint was trained at"
            )
        return int(img_size[0]), int(img_size[1])
    grid = guess_grid(num_tokens)
    if grid is None:
        raise CheckpointLayoutError(
            f"{path}: cannot tell the input size from {key} ({num_tokens} patch rows is not a 4:3 grid); "
            f"pass --img-size H W"
        )
    return grid[0] * patch_size, grid[1] * patch_size


def infer_num_heads(embed_dim: int, num_heads: int | None, path: str) -> int:
    """Attention heads: the given value, else the released ViTPose size with this width."""
    if num_heads is not None:
        if embed_dim % num_heads:
            raise CheckpointLayoutError(
                f"{path}: embed_dim {embed_dim} is not divisible by num_heads {num_heads}"
            )
        return int(num_heads)
    if embed_dim in NUM_HEADS_BY_WIDTH:
        return NUM_HEADS_BY_WIDTH[embed_dim]
    raise CheckpointLayoutError(
        f"{path}: the number of attention heads is not stored in the weights and embed_dim {embed_dim} is not a "
        f"released ViTPose width ({sorted(NUM_HEADS_BY_WIDTH)}); pass --num-heads (or --size)"
    )


def backbone_config_from_official(
    sd: StateDict,
    path: str,
    *,
    num_heads: int | None = None,
    img_size: tuple[int, int] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Backbone dims from an official-layout backbone state dict (keys without the ``backbone.`` prefix)."""
    for required in (
        "patch_embed.proj.weight",
        "pos_embed",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.weight",
    ):
        if required not in sd:
            raise CheckpointLayoutError(
                f"{path}: backbone key '{required}' is missing (found {sorted(sd)[:8]} ...)"
            )
    proj = sd["patch_embed.proj.weight"]
    embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
    if in_chans != 3 or proj.shape[-2] != patch_size:
        raise CheckpointLayoutError(
            f"{path}: patch_embed.proj.weight has shape {tuple(proj.shape)}, expected (C,3,p,p)"
        )
    if sd["pos_embed"].shape[-1] != embed_dim:
        raise CheckpointLayoutError(
            f"{path}: pos_embed width {sd['pos_embed'].shape[-1]} != patch_embed width {embed_dim}"
        )
    block_ids = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
    depth = len(block_ids)
    if block_ids != list(range(depth)):
        raise CheckpointLayoutError(f"{path}: block indices are not contiguous: {block_ids}")
    if name is not None:
        try:
            spec = get_backbone_spec(name)
        except ValueError as err:
            raise CheckpointLayoutError(f"{path}: --size: {err}") from None
        if (spec.embed_dim, spec.depth) != (embed_dim, depth):
            raise CheckpointLayoutError(
                f"{path}: --size {name} is embed_dim {spec.embed_dim} / depth {spec.depth} but the weights have "
                f"embed_dim {embed_dim} / depth {depth}"
            )
        num_heads = num_heads or spec.num_heads
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    expert_ids = sorted({int(k.split(".")[4]) for k in sd if k.startswith("blocks.0.mlp.experts.")})
    fc2_rows = sd["blocks.0.mlp.fc2.weight"].shape[0]
    if expert_ids:
        if expert_ids != list(range(len(expert_ids))):
            raise CheckpointLayoutError(
                f"{path}: expert indices in blocks.0.mlp.experts are not contiguous: {expert_ids}"
            )
        part = sd["blocks.0.mlp.experts.0.weight"].shape[0]
        if fc2_rows + part != embed_dim:
            raise CheckpointLayoutError(
                f"{path}: blocks.0.mlp.fc2.weight has {fc2_rows} rows and each expert {part}; shared + expert "
                f"rows must equal embed_dim {embed_dim}"
            )
        for i in block_ids:
            for k in expert_ids:
                key = f"blocks.{i}.mlp.experts.{k}.weight"
                if key not in sd or sd[key].shape != (part, hidden):
                    got = tuple(sd[key].shape) if key in sd else "missing"
                    raise CheckpointLayoutError(f"{path}: {key} is {got}, expected ({part}, {hidden})")
        ffn = {"ffn": "ps", "num_experts": len(expert_ids), "part_features": int(part)}
    else:
        if fc2_rows != embed_dim:
            raise CheckpointLayoutError(
                f"{path}: blocks.0.mlp.fc2.weight has {fc2_rows} rows, expected {embed_dim}"
            )
        ffn = {"ffn": "shared", "num_experts": 1, "part_features": None}
    return {
        "name": name,
        "embed_dim": int(embed_dim),
        "depth": depth,
        "num_heads": infer_num_heads(embed_dim, num_heads, path),
        "mlp_ratio": hidden / embed_dim,
        "patch_size": int(patch_size),
        "img_size": list(_resolve_img_size(sd["pos_embed"], patch_size, img_size, path, "pos_embed")),
        "ratio": 1,
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        **ffn,
    }


def head_config_from_official(
    sd: StateDict, path: str, prefix: str, name: str, skeleton: str
) -> dict[str, Any]:
    """Head type and dims from official head keys (``sd`` keys without ``prefix``, which is only for messages)."""
    if "final_layer.weight" not in sd:
        raise CheckpointLayoutError(
            f"{path}: head '{prefix}' has no final_layer.weight (keys: {sorted(sd)[:6]})"
        )
    final = sd["final_layer.weight"]
    deconv_ids = sorted({int(k.split(".")[1]) for k in sd if k.startswith("deconv_layers.")})
    conv_ids = [
        i
        for i in deconv_ids
        if sd.get(f"deconv_layers.{i}.weight") is not None and sd[f"deconv_layers.{i}.weight"].ndim == 4
    ]
    if conv_ids and conv_ids != list(range(0, 3 * len(conv_ids), 3)):
        raise CheckpointLayoutError(
            f"{path}: {prefix}deconv_layers has ConvTranspose weights at {conv_ids}; expected indices 0, 3, ..."
        )
    cfg: dict[str, Any] = {"skeleton": skeleton, "num_keypoints": int(final.shape[0])}
    final_kernel = int(final.shape[-1])
    if conv_ids:
        kernels = {int(sd[f"deconv_layers.{i}.weight"].shape[2]) for i in conv_ids}
        if kernels != {4}:
            raise CheckpointLayoutError(
                f"{path}: {prefix}deconv_layers has kernel sizes {sorted(kernels)}; multipose builds the official "
                f"4x4 deconvolutions only"
            )
        cfg["arch"] = {
            "type": "classic",
            "deconv_filters": [int(sd[f"deconv_layers.{i}.weight"].shape[1]) for i in conv_ids],
            "final_kernel": final_kernel,
        }
        if len(conv_ids) != 2:
            raise CheckpointLayoutError(
                f"{path}: {prefix}deconv_layers has {len(conv_ids)} deconvolutions; a stride-16 ViTPose head "
                f"needs 2 (x4 upsampling)"
            )
    else:
        if final_kernel != 3:
            raise CheckpointLayoutError(
                f"{path}: {prefix}final_layer is {final_kernel}x{final_kernel} without deconv_layers; the "
                f"simple decoder uses 3x3"
            )
        cfg["arch"] = {"type": "simple"}
    return cfg


def _registry_name(dims: dict[str, Any]) -> str:
    """Name of the registered size with these dims, else the one with the same width, else ``vit_tiny``
    (the explicit ``overrides`` always win, so the name is only a label)."""
    for spec in BACKBONES.values():
        if (spec.embed_dim, spec.depth, spec.num_heads) == (
            dims["embed_dim"],
            dims["depth"],
            dims["num_heads"],
        ):
            return spec.name
    for spec in BACKBONES.values():
        if spec.embed_dim == dims["embed_dim"]:
            return spec.name
    return "vit_tiny"


def make_model_config(dims: dict[str, Any], heads: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    """The model config (dict form of :class:`~multipose.models.model_config.ModelConfig`) from backbone dims
    read off the weights and per-head configs (``skeleton``, ``num_keypoints``, ``arch``). All heads must share
    one architecture."""
    archs = {json.dumps(h["arch"], sort_keys=True) for h in heads.values()}
    if len(archs) > 1:
        detail = {n: h["arch"] for n, h in heads.items()}
        raise CheckpointLayoutError(f"{path}: heads of different architectures are not supported: {detail}")
    arch = dict(next(iter(heads.values()))["arch"]) if heads else {"type": "classic"}
    filters = arch.get("deconv_filters")
    backbone = BackboneConfig(
        name=dims.get("name") or _registry_name(dims),
        ffn=dims["ffn"],
        num_experts=int(dims["num_experts"]),
        part_features=dims["part_features"],
        img_size=tuple(int(v) for v in dims["img_size"]),
        overrides={
            k: dims[k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "patch_size")
        },
    )
    config = ModelConfig(
        backbone=backbone,
        head=HeadArch(arch["type"], None if filters is None else tuple(filters), arch.get("final_kernel")),
        heads=tuple(HeadSpec(n, h["skeleton"], int(h["num_keypoints"])) for n, h in heads.items()),
    )
    return config.to_dict()


def _split_official_heads(sd: StateDict) -> tuple[StateDict, OrderedDict[str, StateDict], StateDict]:
    """Split an official full-model state dict into backbone, ordered heads (checkpoint order) and the rest."""
    backbone: StateDict = {}
    heads: OrderedDict[str, StateDict] = OrderedDict()
    rest: StateDict = {}
    assoc: dict[int, StateDict] = {}
    for key, value in sd.items():
        if key.startswith("backbone."):
            backbone[key[len("backbone.") :]] = value
        elif key.startswith("keypoint_head."):
            heads.setdefault("keypoint_head.", {})[key[len("keypoint_head.") :]] = value
        elif m := re.match(r"^associate_keypoint_heads\.(\d+)\.(.+)$", key):
            assoc.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            rest[key] = value
    for j in sorted(assoc):
        heads[f"associate_keypoint_heads.{j}."] = assoc[j]
    return backbone, heads, rest


def _check_known(keys: list[str], pattern: re.Pattern, path: str, where: str) -> None:
    bad = sorted(k for k in keys if not pattern.match(k))
    if bad:
        raise CheckpointLayoutError(
            f"{path}: unexpected {where} keys (not in the official layout): {bad[:10]}"
        )


def convert_official(
    sd: StateDict,
    path: str = "<checkpoint>",
    *,
    fmt: str | None = None,
    head_names: list[str] | None = None,
    skeletons: list[str] | None = None,
    num_heads: int | None = None,
    img_size: tuple[int, int] | None = None,
    size_name: str | None = None,
) -> ConversionResult:
    """Official ViTPose / ViTPose++ state dict -> multipose layout.

    Heads are taken in checkpoint order (``keypoint_head``, ``associate_keypoint_heads.0``, ...). ViTPose++
    (experts present) names them coco, aic, mpii, ap10k, apt36k, wholebody; other checkpoints name each head
    from its number of keypoints (17 coco, 14 aic, 16 mpii, 133 wholebody). ``head_names`` / ``skeletons``
    override the names (one per head, checkpoint order).
    """
    backbone, heads, rest = _split_official_heads(sd)
    dropped = []
    for key in list(backbone):
        if key == "cls_token":
            dropped.append("backbone.cls_token")
            del backbone[key]
    if rest:
        raise CheckpointLayoutError(
            f"{path}: keys outside backbone.* / keypoint_head.* / associate_keypoint_heads.*: {sorted(rest)[:10]}"
        )
    notes: list[str] = []
    # Split per-task files from tools/model_split.py keep the dead experts next to a full-width fc2.
    if "blocks.0.mlp.experts.0.weight" in backbone and not _has_live_experts(backbone, ""):
        dead = sorted(k for k in backbone if ".mlp.experts." in k)
        for key in dead:
            del backbone[key]
        dropped.extend("backbone." + k for k in dead)
        notes.append("fc2 is already full width (a model_split.py per-task file): leftover experts dropped")
    _check_known(list(backbone), _BACKBONE_KEY, path, "backbone")
    bb_cfg = backbone_config_from_official(
        backbone, path, num_heads=num_heads, img_size=img_size, name=size_name
    )
    is_moe = bb_cfg["ffn"] == "ps"
    detected = "vitpose++" if is_moe else "vitpose"
    if fmt is not None and fmt != detected:
        raise CheckpointLayoutError(
            f"{path}: --format {fmt} was asked for but the file is {detected} "
            f"(experts in blocks.0.mlp: {'yes' if is_moe else 'none'})"
        )
    if not heads:
        raise CheckpointLayoutError(f"{path}: no keypoint_head.* keys: not a full ViTPose model checkpoint")
    prefixes = list(heads)
    for prefix in prefixes:
        _check_known(list(heads[prefix]), _HEAD_KEY, path, f"{prefix}*")
    names, skels = _name_heads(heads, path, is_moe, head_names, skeletons)
    head_cfgs: dict[str, Any] = {}
    out: StateDict = {f"backbone.{k}": v for k, v in backbone.items()}
    for prefix, name, skel in zip(prefixes, names, skels):
        head_cfgs[name] = head_config_from_official(heads[prefix], path, prefix, name, skel)
        out.update({f"heads.{name}.{k}": v for k, v in heads[prefix].items()})
    if is_moe and len(head_cfgs) != bb_cfg["num_experts"]:
        notes.append(f"{bb_cfg['num_experts']} experts but {len(head_cfgs)} heads: head i uses expert i")
    return ConversionResult(
        format=detected,
        model_config=make_model_config(bb_cfg, head_cfgs, path),
        state_dict=out,
        source=path,
        dropped=dropped,
        notes=notes,
    )


def _name_heads(
    heads: OrderedDict[str, StateDict],
    path: str,
    is_moe: bool,
    head_names: list[str] | None,
    skeletons: list[str] | None,
) -> tuple[list[str], list[str]]:
    prefixes = list(heads)
    ks = [
        int(heads[p]["final_layer.weight"].shape[0]) if "final_layer.weight" in heads[p] else -1
        for p in prefixes
    ]
    if head_names is not None:
        if len(head_names) != len(prefixes):
            raise CheckpointLayoutError(
                f"{path}: {len(head_names)} head names given for {len(prefixes)} heads ({', '.join(p.rstrip('.') for p in prefixes)})"
            )
        names = list(head_names)
        skels = list(skeletons) if skeletons is not None else list(names)
    elif is_moe and len(prefixes) == len(VITPOSE_PP_HEADS):
        for prefix, k, (name, _, expected) in zip(prefixes, ks, VITPOSE_PP_HEADS):
            if k != expected:
                raise CheckpointLayoutError(
                    f"{path}: {prefix}final_layer.weight has {k} keypoints but the ViTPose++ order expects "
                    f"{expected} for '{name}'; pass --head-names for a differently ordered checkpoint"
                )
        names = [n for n, _, _ in VITPOSE_PP_HEADS]
        skels = [s for _, s, _ in VITPOSE_PP_HEADS]
    else:
        unknown = [f"{p}final_layer ({k})" for p, k in zip(prefixes, ks) if k not in HEAD_BY_NUM_KEYPOINTS]
        if unknown:
            raise CheckpointLayoutError(
                f"{path}: cannot name heads by their number of keypoints: {unknown}; pass --head-names"
            )
        names = [HEAD_BY_NUM_KEYPOINTS[k][0] for k in ks]
        skels = [HEAD_BY_NUM_KEYPOINTS[k][1] for k in ks]
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        if dup:
            raise CheckpointLayoutError(
                f"{path}: several heads have the same number of keypoints ({dup}); pass --head-names "
                f"(one per head in order {', '.join(p.rstrip('.') for p in prefixes)})"
            )
    if skeletons is not None:
        if len(skeletons) != len(names):
            raise CheckpointLayoutError(f"{path}: {len(skeletons)} skeletons given for {len(names)} heads")
        skels = list(skeletons)
    if len(set(names)) != len(names):
        raise CheckpointLayoutError(f"{path}: head names must be unique, got {names}")
    return names, skels
