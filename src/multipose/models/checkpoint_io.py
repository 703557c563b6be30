"""Checkpoint interop: safe reading, format detection and key mappings to the multipose layout.

Nothing in this module builds a network; it works on ``dict[str, Tensor]`` state dicts only, so every mapping
can be checked without the model code. :mod:`multipose.models.loading` builds the model from the result.

The multipose checkpoint format
------------------------------
A converted checkpoint is a plain dictionary::

    {"multipose_version": "0.1.0",          # package version that wrote it
     "format_version": "1",                 # version of this layout
     "model_config": {...},                 # plain python containers only (see below)
     "source": {"format": "vitpose++", "file": "vitpose+_base.pth"},
     "state_dict": {"backbone.blocks.0.attn.qkv.weight": Tensor, ..., "heads.coco.final_layer.weight": ...}}

written with ``torch.save`` (so it loads with ``torch.load(weights_only=True)``) or, when the file name ends in
``.safetensors``, as safetensors tensors with everything else as JSON under the metadata key ``"multipose"``.

``model_config`` is the schema of :mod:`multipose.models.build` -- the same dict training stores in a Lightning
checkpoint's ``hyper_parameters["model_config"]``::

    backbone: {name: vit_base, ffn: shared|ps, part_features: 192|null, num_experts: 6, img_size: [256, 192],
               ratio: 1, overrides: {embed_dim, depth, num_heads, mlp_ratio, qkv_bias, patch_size}}
    head:     {type: classic|simple, deconv_filters: [256, 256], final_kernel: 1}
    heads:    {coco: {skeleton: coco, num_keypoints: 17}, aic: {...}, ...}     # dataset / expert order

Backbone keys are the official ViTPose names (``patch_embed.proj``, ``pos_embed`` of shape ``(1, 1+h*w, C)``
with the unused cls slot, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2,mlp.experts.k}``,
``last_norm``) under ``backbone.``; head keys are the official head names (``deconv_layers.{0,1,3,4}``,
``final_layer``) under ``heads.<dataset name>.``. Head i uses expert i.

Supported sources (``detect_format``):

``multipose``  a file written by :func:`save_multipose`.
``lightning``  a training checkpoint: ``hyper_parameters["model_config"]`` + ``state_dict`` keys ``model.*``.
``vitpose``    official ViTPose (mmcv dict, ``backbone.*`` + ``keypoint_head.*`` [+ ``associate_keypoint_heads.*``]).
``vitpose++``  official ViTPose++ (``backbone.blocks.i.mlp.experts.k`` + six heads).
``hf``         Hugging Face transformers ``VitPoseForPoseEstimation`` / ``VitPoseBackbone`` state dicts.
``mae``        MAE pretraining weights (``blocks.*`` without prefix, ``pos_embed`` on a square grid).
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multipose.models.vit import resize_pos_embed, token_grid

Tensor = torch.Tensor
StateDict = dict[str, Tensor]

MULTIPOSE_FORMAT_VERSION = "1"
FORMATS = ("multipose", "lightning", "vitpose", "vitpose++", "hf", "mae")
SAFETENSORS_METADATA_KEY = "multipose"

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
# Attention heads per embedding width of the released ViTPose sizes (vitpose.md §1.2; S has 12 heads, not 6).
NUM_HEADS_BY_WIDTH: dict[int, int] = {192: 3, 384: 12, 768: 12, 1024: 16, 1280: 16}

# Official backbone / head parameter names (without prefix).
_BACKBONE_KEY = re.compile(
    r"^(pos_embed|patch_embed\.proj\.(weight|bias)|last_norm\.(weight|bias)|"
    r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|mlp\.experts\.\d+)\.(weight|bias))$"
)
_HEAD_KEY = re.compile(
    r"^(deconv_layers\.\d+\.(weight|bias|running_mean|running_var|num_batches_tracked)|final_layer\.(weight|bias))$"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file and the keys."""


# ----------------------------------------------------------------------------------------------- safe reading

# Globals that only rebuild plain data (numpy scalars/arrays inside mmcv ``meta``); nothing here runs code.
_DATA_ONLY_GLOBALS = (
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
)


def _resolve_data_global(name: str) -> Any | None:
    """Return the object for an allow-listed data-only global (numpy scalar/dtype/ndarray), else None."""
    import importlib

    if name.startswith("numpy.dtypes.") and name.endswith("DType"):
        pass
    elif name not in _DATA_ONLY_GLOBALS:
        return None
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def _numpy_dtype_classes() -> list[type]:
    """numpy's dtype classes (``numpy.dtypes.Float64DType``, ...): needed to rebuild numpy scalars."""
    try:
        import numpy as np

        return [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    except (ImportError, AttributeError):
        return []


def _unpickler_reason(err: Exception) -> str:
    """The one informative line of torch's weights_only error (without its 'load unsafely' advice)."""
    m = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    return m.group(1).split(". Please")[0].strip() if m else str(err).splitlines()[0]


def _torch_load_weights_only(path: Path) -> Any:
    """``torch.load(weights_only=True)``; numpy scalars/dtypes (mmcv ``meta``) are allowed, nothing else."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            unsafe = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - not a zip checkpoint: fall back to the original error
            unsafe = []
        resolved = {name: _resolve_data_global(name) for name in unsafe}
        refused = sorted(name for name, obj in resolved.items() if obj is None)
        if refused or not unsafe:
            names = ", ".join(refused) if refused else "(see below)"
            raise CheckpointError(
                f"{path}: refusing to load: the file pickles Python objects that could run code when "
                f"unpickled ({names}). multipose only reads tensors and plain containers "
                f"(torch.load(weights_only=True)). Re-save the weights as a plain state dict or .safetensors "
                f"from a trusted environment. ({_unpickler_reason(err)})"
            ) from err
        with torch.serialization.safe_globals([*resolved.values(), *_numpy_dtype_classes()]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as err2:
                raise CheckpointError(
                    f"{path}: refusing to load: weights_only unpickling failed even with numpy scalars allowed. "
                    f"multipose only reads tensors and plain containers. ({_unpickler_reason(err2)})"
                ) from err2


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without executing pickled code.

    ``.safetensors`` files give ``{"state_dict": tensors, "metadata": {...}}`` (a multipose file becomes the
    multipose dict again). Everything else goes through ``torch.load(weights_only=True)``. A bare state dict
    comes back as is; callers use :func:`unwrap_state_dict`.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        if not candidates:
            raise CheckpointError(f"{path}: directory holds no *.safetensors or *.bin weights file")
        path = candidates[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        tensors: StateDict = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
        if SAFETENSORS_METADATA_KEY in metadata:
            try:
                info = json.loads(metadata[SAFETENSORS_METADATA_KEY])
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{path}: metadata '{SAFETENSORS_METADATA_KEY}' is not valid JSON") from err
            return {**info, "state_dict": tensors}
        return {"state_dict": tensors, "metadata": dict(metadata)}
    obj = _torch_load_weights_only(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return obj


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def unwrap_state_dict(obj: dict[str, Any], path: str | Path = "<checkpoint>") -> StateDict:
    """Find the tensors in a checkpoint dict (``state_dict`` / ``model`` / ``module`` / bare) and strip a
    leading ``module.`` (DDP) from every key."""
    sd: Any = obj
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
            break
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: no state dict found (looked for 'state_dict', 'model', 'module')")
    non_tensor = sorted(k for k, v in sd.items() if not isinstance(v, Tensor))
    if non_tensor:
        raise CheckpointError(
            f"{path}: the state dict holds non-tensor entries {non_tensor[:8]}; is this a checkpoint of "
            f"another kind? Top-level keys: {sorted(obj)[:12]}"
        )
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


# --------------------------------------------------------------------------------------------------- detection


def detect_format(obj: dict[str, Any], path: str | Path = "<checkpoint>") -> str:
    """Return one of :data:`FORMATS` from the keys of a checkpoint read with :func:`read_checkpoint`."""
    if "multipose_version" in obj and "model_config" in obj:
        return "multipose"
    if "state_dict" in obj and isinstance(obj.get("hyper_parameters"), dict):
        return "lightning"
    sd = unwrap_state_dict(obj, path)
    keys = set(sd)
    if any(k.startswith("backbone.embeddings.") or k.startswith("embeddings.patch_embeddings.") for k in keys):
        return "hf"
    if "backbone.patch_embed.proj.weight" in keys or any(k.startswith("backbone.blocks.") for k in keys):
        return "vitpose++" if _has_live_experts(sd, "backbone.") else "vitpose"
    if "patch_embed.proj.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return "mae"
    raise CheckpointError(
        f"{path}: unknown checkpoint layout. Expected official ViTPose keys (backbone.patch_embed.proj.weight, "
        f"keypoint_head.*), Hugging Face VitPose keys (backbone.embeddings.*), MAE keys (patch_embed.proj.weight, "
        f"blocks.*) or a multipose/Lightning checkpoint. First keys found: {sorted(keys)[:10]}. "
        f"Pass --format to force a layout."
    )


def _has_live_experts(sd: StateDict, prefix: str) -> bool:
    """True for a real MoE checkpoint: experts present and fc2 narrower than C (split files keep dead experts)."""
    fc2 = sd.get(f"{prefix}blocks.0.mlp.fc2.weight")
    expert = sd.get(f"{prefix}blocks.0.mlp.experts.0.weight")
    if expert is None:
        return False
    width = sd[f"{prefix}patch_embed.proj.weight"].shape[0] if f"{prefix}patch_embed.proj.weight" in sd else None
    return fc2 is None or width is None or fc2.shape[0] < width


# ---------------------------------------------------------------------------------------------- result object


@dataclass
class ConversionResult:
    """A checkpoint in the multipose layout plus what the conversion did (for the printed summary)."""

    format: str
    model_config: dict[str, Any]
    state_dict: StateDict
    source: str = ""
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        bb = self.model_config["backbone"]
        dims = {**bb, **(bb.get("overrides") or {})}
        dim_text = ", ".join(f"{k} {dims[k]}" for k in ("embed_dim", "depth", "num_heads") if k in dims)
        lines = [
            f"source     : {self.source} (format {self.format})",
            f"backbone   : {bb.get('name')} ({dim_text}), img_size {tuple(bb.get('img_size') or ())}, "
            f"ffn {bb.get('ffn', 'shared')}"
            + (f" ({bb.get('num_experts')} experts x {bb.get('part_features')})" if bb.get("ffn") == "ps" else ""),
        ]
        heads = self.model_config.get("heads", {})
        head_type = (self.model_config.get("head") or {}).get("type", "classic")
        if heads:
            for name, h in heads.items():
                lines.append(
                    f"head       : {name:<10} skeleton {h['skeleton']:<15} K {h['num_keypoints']:<4} {head_type}"
                )
        else:
            lines.append("head       : none (backbone only)")
        n_params = sum(t.numel() for t in self.state_dict.values())
        lines.append(f"tensors    : {len(self.state_dict)} ({n_params / 1e6:.2f} M values)")
        if self.dropped:
            lines.append(f"dropped    : {len(self.dropped)} keys: " + ", ".join(compact_keys(self.dropped)))
        lines.extend(f"note       : {n}" for n in self.notes)
        return "\n".join(lines)


def compact_keys(keys: list[str], limit: int = 12) -> list[str]:
    """Collapse numeric indices (``decoder_blocks.3.attn`` -> ``decoder_blocks.*.attn``) and count repeats."""
    counts = Counter(re.sub(r"\.\d+(?=\.|$)", ".*", k) for k in keys)
    out = [p if n == 1 else f"{p} (x{n})" for p, n in counts.items()]
    return out if len(out) <= limit else [*out[:limit], f"... {len(out) - limit} more patterns"]


# ---------------------------------------------------------------------------------------- backbone geometry


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
            raise CheckpointError(
                f"{path}: {key} has {num_tokens} patch rows but img_size {tuple(img_size)} gives a "
                f"{gh}x{gw} grid ({gh * gw}); pass the input size the checkpoint was trained at"
            )
        return int(img_size[0]), int(img_size[1])
    grid = guess_grid(num_tokens)
    if grid is None:
        raise CheckpointError(
            f"{path}: cannot tell the input size from {key} ({num_tokens} patch rows is not a 4:3 grid); "
            f"pass --img-size H W"
        )
    return grid[0] * patch_size, grid[1] * patch_size


def infer_num_heads(embed_dim: int, num_heads: int | None, path: str) -> int:
    """Attention heads: the given value, else the released ViTPose size with this width."""
    if num_heads is not None:
        if embed_dim % num_heads:
            raise CheckpointError(f"{path}: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        return int(num_heads)
    if embed_dim in NUM_HEADS_BY_WIDTH:
        return NUM_HEADS_BY_WIDTH[embed_dim]
    raise CheckpointError(
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
    for required in ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"):
        if required not in sd:
            raise CheckpointError(f"{path}: backbone key '{required}' is missing (found {sorted(sd)[:8]} ...)")
    proj = sd["patch_embed.proj.weight"]
    embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
    if in_chans != 3 or proj.shape[-2] != patch_size:
        raise CheckpointError(f"{path}: patch_embed.proj.weight has shape {tuple(proj.shape)}, expected (C,3,p,p)")
    if sd["pos_embed"].shape[-1] != embed_dim:
        raise CheckpointError(
            f"{path}: pos_embed width {sd['pos_embed'].shape[-1]} != patch_embed width {embed_dim}"
        )
    block_ids = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
    depth = len(block_ids)
    if block_ids != list(range(depth)):
        raise CheckpointError(f"{path}: block indices are not contiguous: {block_ids}")
    if name is not None:
        from multipose.models.registry import get_backbone_spec

        try:
            spec = get_backbone_spec(name)
        except ValueError as err:
            raise CheckpointError(f"{path}: --size: {err}") from None
        if (spec.embed_dim, spec.depth) != (embed_dim, depth):
            raise CheckpointError(
                f"{path}: --size {name} is embed_dim {spec.embed_dim} / depth {spec.depth} but the weights have "
                f"embed_dim {embed_dim} / depth {depth}"
            )
        num_heads = num_heads or spec.num_heads
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    expert_ids = sorted({int(k.split(".")[4]) for k in sd if k.startswith("blocks.0.mlp.experts.")})
    fc2_rows = sd["blocks.0.mlp.fc2.weight"].shape[0]
    if expert_ids:
        if expert_ids != list(range(len(expert_ids))):
            raise CheckpointError(f"{path}: expert indices in blocks.0.mlp.experts are not contiguous: {expert_ids}")
        part = sd["blocks.0.mlp.experts.0.weight"].shape[0]
        if fc2_rows + part != embed_dim:
            raise CheckpointError(
                f"{path}: blocks.0.mlp.fc2.weight has {fc2_rows} rows and each expert {part}; shared + expert "
                f"rows must equal embed_dim {embed_dim}"
            )
        for i in block_ids:
            for k in expert_ids:
                key = f"blocks.{i}.mlp.experts.{k}.weight"
                if key not in sd or sd[key].shape != (part, hidden):
                    got = tuple(sd[key].shape) if key in sd else "missing"
                    raise CheckpointError(f"{path}: {key} is {got}, expected ({part}, {hidden})")
        ffn = {"ffn": "ps", "num_experts": len(expert_ids), "part_features": int(part)}
    else:
        if fc2_rows != embed_dim:
            raise CheckpointError(f"{path}: blocks.0.mlp.fc2.weight has {fc2_rows} rows, expected {embed_dim}")
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


def head_config_from_official(sd: StateDict, path: str, prefix: str, name: str, skeleton: str) -> dict[str, Any]:
    """Head type and dims from official head keys (``sd`` keys without ``prefix``, which is only for messages)."""
    if "final_layer.weight" not in sd:
        raise CheckpointError(f"{path}: head '{prefix}' has no final_layer.weight (keys: {sorted(sd)[:6]})")
    final = sd["final_layer.weight"]
    deconv_ids = sorted({int(k.split(".")[1]) for k in sd if k.startswith("deconv_layers.")})
    conv_ids = [i for i in deconv_ids if sd.get(f"deconv_layers.{i}.weight") is not None and sd[f"deconv_layers.{i}.weight"].ndim == 4]
    if conv_ids and conv_ids != list(range(0, 3 * len(conv_ids), 3)):
        raise CheckpointError(
            f"{path}: {prefix}deconv_layers has ConvTranspose weights at {conv_ids}; expected indices 0, 3, ..."
        )
    cfg: dict[str, Any] = {"skeleton": skeleton, "num_keypoints": int(final.shape[0])}
    final_kernel = int(final.shape[-1])
    if conv_ids:
        kernels = {int(sd[f"deconv_layers.{i}.weight"].shape[2]) for i in conv_ids}
        if kernels != {4}:
            raise CheckpointError(
                f"{path}: {prefix}deconv_layers has kernel sizes {sorted(kernels)}; multipose builds the official "
                f"4x4 deconvolutions only"
            )
        cfg["arch"] = {
            "type": "classic",
            "deconv_filters": [int(sd[f"deconv_layers.{i}.weight"].shape[1]) for i in conv_ids],
            "final_kernel": final_kernel,
        }
        if len(conv_ids) != 2:
            raise CheckpointError(
                f"{path}: {prefix}deconv_layers has {len(conv_ids)} deconvolutions; a stride-16 ViTPose head "
                f"needs 2 (x4 upsampling)"
            )
    else:
        if final_kernel != 3:
            raise CheckpointError(
                f"{path}: {prefix}final_layer is {final_kernel}x{final_kernel} without deconv_layers; the "
                f"simple decoder uses 3x3"
            )
        cfg["arch"] = {"type": "simple"}
    return cfg


def _registry_name(dims: dict[str, Any]) -> str:
    """Name of the registered size with these dims, else the one with the same width, else ``vit_tiny``
    (the explicit ``overrides`` always win, so the name only picks training defaults such as drop path)."""
    from multipose.models.registry import BACKBONES

    for spec in BACKBONES.values():
        if (spec.embed_dim, spec.depth, spec.num_heads) == (dims["embed_dim"], dims["depth"], dims["num_heads"]):
            return spec.name
    for spec in BACKBONES.values():
        if spec.embed_dim == dims["embed_dim"]:
            return spec.name
    return "vit_tiny"


def make_model_config(dims: dict[str, Any], heads: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    """The ``model_config`` schema of :mod:`multipose.models.build` (the same dict training stores in
    ``hyper_parameters["model_config"]``) from backbone dims and per-head configs (``skeleton``,
    ``num_keypoints``, ``arch``). All heads must share one architecture."""
    archs = {json.dumps(h["arch"], sort_keys=True) for h in heads.values()}
    if len(archs) > 1:
        detail = {n: h["arch"] for n, h in heads.items()}
        raise CheckpointError(f"{path}: heads of different architectures are not supported: {detail}")
    backbone = {
        "name": dims.get("name") or _registry_name(dims),
        "ffn": dims["ffn"],
        "part_features": dims["part_features"],
        "num_experts": dims["num_experts"],
        "img_size": list(dims["img_size"]),
        "ratio": 1,
        "overrides": {
            k: dims[k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "patch_size")
        },
    }
    return {
        "backbone": backbone,
        "head": dict(next(iter(heads.values()))["arch"]) if heads else {},
        "heads": {n: {"skeleton": h["skeleton"], "num_keypoints": h["num_keypoints"]} for n, h in heads.items()},
    }


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
        raise CheckpointError(f"{path}: unexpected {where} keys (not in the official layout): {bad[:10]}")


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
        raise CheckpointError(
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
    bb_cfg = backbone_config_from_official(backbone, path, num_heads=num_heads, img_size=img_size, name=size_name)
    is_moe = bb_cfg["ffn"] == "ps"
    detected = "vitpose++" if is_moe else "vitpose"
    if fmt is not None and fmt != detected:
        raise CheckpointError(
            f"{path}: --format {fmt} was asked for but the file is {detected} "
            f"(experts in blocks.0.mlp: {'yes' if is_moe else 'none'})"
        )
    if not heads:
        raise CheckpointError(f"{path}: no keypoint_head.* keys: not a full ViTPose model checkpoint")
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
    ks = [int(heads[p]["final_layer.weight"].shape[0]) if "final_layer.weight" in heads[p] else -1 for p in prefixes]
    if head_names is not None:
        if len(head_names) != len(prefixes):
            raise CheckpointError(
                f"{path}: {len(head_names)} head names given for {len(prefixes)} heads ({', '.join(p.rstrip('.') for p in prefixes)})"
            )
        names = list(head_names)
        skels = list(skeletons) if skeletons is not None else list(names)
    elif is_moe and len(prefixes) == len(VITPOSE_PP_HEADS):
        for prefix, k, (name, _, expected) in zip(prefixes, ks, VITPOSE_PP_HEADS):
            if k != expected:
                raise CheckpointError(
                    f"{path}: {prefix}final_layer.weight has {k} keypoints but the ViTPose++ order expects "
                    f"{expected} for '{name}'; pass --head-names for a differently ordered checkpoint"
                )
        names = [n for n, _, _ in VITPOSE_PP_HEADS]
        skels = [s for _, s, _ in VITPOSE_PP_HEADS]
    else:
        unknown = [f"{p}final_layer ({k})" for p, k in zip(prefixes, ks) if k not in HEAD_BY_NUM_KEYPOINTS]
        if unknown:
            raise CheckpointError(
                f"{path}: cannot name heads by their number of keypoints: {unknown}; pass --head-names"
            )
        names = [HEAD_BY_NUM_KEYPOINTS[k][0] for k in ks]
        skels = [HEAD_BY_NUM_KEYPOINTS[k][1] for k in ks]
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        if dup:
            raise CheckpointError(
                f"{path}: several heads have the same number of keypoints ({dup}); pass --head-names "
                f"(one per head in order {', '.join(p.rstrip('.') for p in prefixes)})"
            )
    if skeletons is not None:
        if len(skeletons) != len(names):
            raise CheckpointError(f"{path}: {len(skeletons)} skeletons given for {len(names)} heads")
        skels = list(skeletons)
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: head names must be unique, got {names}")
    return names, skels


# ------------------------------------------------------------------------------------------- Hugging Face


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
                        backbone[f"blocks.{i}.{new}{rest[len(old):]}"] = value
                        break
                else:
                    unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: keys not in the Hugging Face VitPose layout: {sorted(unknown)[:10]}")
    for (i, kind), parts in sorted(qkv.items()):
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise CheckpointError(
                f"{path}: {prefix}encoder.layer.{i}.attention.attention.{{{','.join(missing)}}}.{kind} missing; "
                f"cannot fuse q/k/v"
            )
        backbone[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return backbone, head


def merge_experts_state(sd: StateDict, task: int, path: str = "<checkpoint>") -> tuple[StateDict, list[str]]:
    """Fold expert ``task`` of a PS-FFN backbone state dict (official keys, no prefix) into a dense ``fc2``:
    ``fc2 = cat([fc2, experts[task]], 0)`` for weight and bias (shared rows first). Returns the dense state and
    the expert keys it removed (prefixed ``backbone.``)."""
    experts = sorted({int(k.split(".")[4]) for k in sd if re.match(r"^blocks\.0\.mlp\.experts\.\d+\.", k)})
    if task not in experts:
        raise CheckpointError(f"{path}: expert {task} requested but the checkpoint has experts {experts}")
    out: StateDict = {}
    removed: list[str] = []
    for key, value in sd.items():
        if m := re.match(r"^(blocks\.\d+\.mlp)\.experts\.(\d+)\.(weight|bias)$", key):
            removed.append("backbone." + key)
        elif m := re.match(r"^(blocks\.\d+\.mlp)\.fc2\.(weight|bias)$", key):
            part = sd.get(f"{m.group(1)}.experts.{task}.{m.group(2)}")
            if part is None:
                raise CheckpointError(f"{path}: {m.group(1)}.experts.{task}.{m.group(2)} is missing")
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
        raise CheckpointError(f"{cfg_file}: not valid JSON ({err})") from err
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
            raise CheckpointError(
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
            notes.append("HF keeps only the COCO head; experts kept: this model needs one head per expert to load")
    return ConversionResult("hf", make_model_config(bb_cfg, heads, path), out, path, dropped, notes)


# ------------------------------------------------------------------------------------------------------ MAE

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
                raise CheckpointError(
                    f"{path}: pos_embed {tuple(value.shape)} is not (1, 1 + s*s, C) on a square MAE grid"
                )
            out[key] = resize_pos_embed(value, (src, src), grid).clone()
            if (src, src) != tuple(grid):
                notes.append(f"pos_embed resized bicubically {src}x{src} -> {grid[0]}x{grid[1]} (cls row kept)")
        elif _BACKBONE_KEY.match(key) and ".mlp.experts." not in key:
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: keys not in the MAE/ViT layout: {sorted(unknown)[:10]}")
    if part_features:
        out = split_dense_fc2(out, part_features, num_experts, path)
        notes.append(f"{num_experts} experts initialised from the last {part_features} fc2 rows of every block")
    if "last_norm.weight" not in out:
        notes.append("MAE norm is not mapped to last_norm (as in the official loader): last_norm keeps its init")
    return out, dropped, notes


def split_dense_fc2(sd: StateDict, part_features: int, num_experts: int, path: str = "<checkpoint>") -> StateDict:
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
            raise CheckpointError(f"{path}: part_features {part_features} does not fit {key} with {width} rows")
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
        raise CheckpointError(f"{path}: MAE weights need patch_embed.proj.weight (found {sorted(sd)[:8]})")
    embed_dim, patch = sd["patch_embed.proj.weight"].shape[0], sd["patch_embed.proj.weight"].shape[-1]
    if ffn == "ps":
        part_features = part_features or embed_dim // 4
    elif ffn != "shared":
        raise CheckpointError(f"{path}: MAE conversion supports ffn 'shared' or 'ps', got {ffn!r}")
    else:
        part_features, num_experts = None, 1
    grid = token_grid(tuple(img_size), patch)
    out, dropped, notes = mae_to_backbone(sd, grid, part_features=part_features, num_experts=num_experts, path=path)
    bb_cfg = backbone_config_from_official(out, path, num_heads=num_heads, img_size=tuple(img_size), name=size_name)
    return ConversionResult(
        "mae",
        make_model_config(bb_cfg, {}, path),
        {f"backbone.{k}": v for k, v in out.items()},
        path,
        dropped,
        notes,
    )


# ---------------------------------------------------------------------------------------- multipose files


def save_multipose(path: str | Path, model_config: dict[str, Any], state_dict: StateDict, source: dict | None = None) -> Path:
    """Write a multipose checkpoint: ``.safetensors`` (tensors + JSON metadata) or anything else via torch.save."""
    from multipose import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    info = {
        "multipose_version": __version__,
        "format_version": MULTIPOSE_FORMAT_VERSION,
        "model_config": json.loads(json.dumps(model_config)),  # plain containers only
        "source": source or {},
    }
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={SAFETENSORS_METADATA_KEY: json.dumps(info)})
    else:
        torch.save({**info, "state_dict": tensors}, path)
    return path


def read_multipose(obj: dict[str, Any], path: str | Path = "<checkpoint>") -> tuple[dict[str, Any], StateDict]:
    """(model_config, state dict) from a multipose dict or a Lightning checkpoint of a multipose run.

    Lightning: the model config is ``hyper_parameters["model_config"]`` (plain containers) and the model's
    weights are the ``state_dict`` keys starting with ``model.`` (other keys, e.g. loss modules, are ignored).
    """
    if "multipose_version" in obj:
        cfg, sd = obj.get("model_config"), obj.get("state_dict")
    elif "hyper_parameters" in obj:
        cfg = obj["hyper_parameters"].get("model_config")
        if cfg is None:
            raise CheckpointError(
                f"{path}: Lightning checkpoint without hyper_parameters['model_config'] "
                f"(found {sorted(obj['hyper_parameters'])[:10]}); it was not written by the multipose trainer"
            )
        sd = {k[len("model.") :]: v for k, v in obj.get("state_dict", {}).items() if k.startswith("model.")}
        if not sd:
            raise CheckpointError(f"{path}: no 'model.*' keys in the Lightning state_dict")
    else:
        raise CheckpointError(f"{path}: not a multipose or Lightning checkpoint (keys {sorted(obj)[:10]})")
    if not isinstance(cfg, dict) or "backbone" not in cfg or "heads" not in cfg:
        raise CheckpointError(f"{path}: model_config must be a dict with 'backbone' and 'heads', got {cfg!r:.200}")
    if not _is_state_dict(sd):
        raise CheckpointError(f"{path}: 'state_dict' is missing or holds non-tensor values")
    return cfg, sd


def convert_checkpoint(
    path: str | Path,
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
) -> ConversionResult:
    """Read any supported checkpoint and return it in the multipose layout (see the module docstring)."""
    if fmt not in ("auto", *FORMATS):
        raise CheckpointError(f"unknown --format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    p = str(path)
    obj = read_checkpoint(path)
    detected = detect_format(obj, p) if fmt == "auto" else fmt
    if detected in ("multipose", "lightning"):
        cfg, sd = read_multipose(obj, p)
        ignored = [k for k in obj.get("state_dict", {}) if detected == "lightning" and not k.startswith("model.")]
        notes = ["Lightning state_dict keys outside 'model.' (training-only modules) are not part of the model"]
        return ConversionResult(detected, cfg, dict(sd), p, ignored, notes if ignored else [])
    sd = unwrap_state_dict(obj, p)
    if detected in ("vitpose", "vitpose++"):
        return convert_official(
            sd, p, fmt=None if fmt == "auto" else fmt, head_names=head_names, skeletons=skeletons,
            num_heads=num_heads, img_size=img_size, size_name=size_name,
        )
    if detected == "hf":
        return convert_hf(
            sd, p, hf_config=read_hf_config(path), head_names=head_names, skeletons=skeletons,
            num_heads=num_heads, img_size=img_size, size_name=size_name, expert=hf_expert,
        )
    return convert_mae(
        sd, p, img_size=img_size or (256, 192), num_heads=num_heads, ffn=ffn,
        num_experts=num_experts, part_features=part_features, size_name=size_name,
    )


# ------------------------------------------------------------------------------------- loading into modules


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
            lines.append(f"  {label:<25}: {len(keys)}" + (f"  {', '.join(compact_keys(keys))}" if keys else ""))
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


def _source_backbone(path: str | Path, num_heads: int | None) -> tuple[StateDict, dict[str, Any], str, list[str]]:
    """Backbone weights (official keys, no prefix) of any supported file, its backbone config (None for MAE),
    the format and the keys dropped on the way."""
    p = str(path)
    obj = read_checkpoint(path)
    fmt = detect_format(obj, p)
    if fmt == "mae":
        return unwrap_state_dict(obj, p), {}, fmt, []
    if fmt == "hf":
        result = convert_hf(
            unwrap_state_dict(obj, p), p, hf_config=read_hf_config(path), expert=None, num_heads=num_heads
        )
    else:  # attention heads are not in the weights: the target's count is what matters here
        result = convert_checkpoint(path, fmt, num_heads=num_heads)
    sd = {k[len("backbone.") :]: v for k, v in result.state_dict.items() if k.startswith("backbone.")}
    heads = sorted(k for k in result.state_dict if not k.startswith("backbone."))
    return sd, result.model_config["backbone"], fmt, result.dropped + heads


def load_backbone_init(backbone: torch.nn.Module, path: str | Path, *, verbose: bool = True) -> LoadReport:
    """Initialise a :class:`~multipose.models.vit.ViTPoseBackbone` from pretrained weights (``backbone.init``).

    Sources: MAE pretraining weights (the official ViTPose recipe), or the backbone of any ViTPose / ViTPose++ /
    Hugging Face / multipose / Lightning checkpoint. The position embedding is resized bicubically (cls slot
    kept) to the backbone's grid. A dense source FFN initialises a PS-FFN as the official loader does (shared
    ``fc2`` = first C-p rows, every expert = the last p rows) and I-FFN / IS-FFN through their
    ``init_from_dense``. MAE ``norm`` is not mapped to ``last_norm`` (official behaviour). Missing / unexpected
    / skipped keys are returned and printed when ``verbose``.
    """
    sd, src_cfg, fmt, dropped = _source_backbone(path, getattr(backbone, "num_heads", None))
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
            raise CheckpointError(f"{p}: cannot tell the token grid of pos_embed {tuple(pos.shape)}")
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
        raise CheckpointError(
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
        notes.append(f"{ffn} FFNs of {len(dense_mlps)} blocks initialised from the dense FFN (init_from_dense)")
    report.dropped = dropped
    report.notes = notes
    if verbose:
        print(report.summary(f"backbone init from {p} (format {fmt}):"))
    return report
