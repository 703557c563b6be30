"""The model description stored in every checkpoint: one frozen type, built in one place.

:class:`ModelConfig` says which network to build (backbone size and FFN, head architecture, one head per
dataset of the mix) and nothing about how it is trained. It travels as the plain dict of :meth:`ModelConfig.to_dict`
(``hyper_parameters["model_config"]`` of a Lightning checkpoint, ``"model_config"`` of a converted multipose
file)::

    backbone: {name: vit_base, ffn: shared|ps|independent|shared_independent, num_experts: 6,
               part_features: 192|null, img_size: [256, 192], ratio: 1, drop_path_rate: 0.3,
               grad_checkpointing: false, knowledge_tokens: 0, stem: patch|conv (written when conv),
               overrides: {embed_dim, depth, num_heads, mlp_ratio, qkv_bias, patch_size}}   # beat the named size
    head:     {type: classic|classic_fp|simple|minimal, deconv_filters: [256, 256], final_kernel: 1}
    heads:    {coco: {skeleton: coco, num_keypoints: 17}, ...}                           # mix order = expert order
    heatmap_size: [64, 48]

:meth:`ModelConfig.from_dict` validates and also reads every dict written before this type existed: training
keys that used to be stored with the backbone (``layer_decay``, ``init``) are ignored, and backbone dimensions
given next to ``name`` instead of under ``overrides`` are moved there. Keys it does not know at the top level are
kept (``extra``) and written back, so newer fields survive a round trip through older code.

The three builders: :func:`model_config_from_hydra` (training: Hydra config + data mix), the checkpoint
converters (:mod:`multipose.models.checkpoints`, dimensions read from the weights) and
:meth:`ModelConfig.merged` (a dense single-head model). Backbone sizes live only in
:mod:`multipose.models.registry`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["BackboneConfig", "HeadArch", "HeadSpec", "ModelConfig", "model_config_from_hydra"]

FFN_TYPES = ("shared", "ps", "independent", "shared_independent")
HEAD_TYPES = ("classic", "classic_fp", "simple", "minimal")
# ViTPoseBackbone arguments a config may set beyond the named size (under ``overrides``)
OVERRIDE_KEYS = (
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "patch_size",
    "part_ratio",
    "in_chans",
    "ddp_safe",
    "fused_attn",
)
# keys older checkpoints stored with the backbone that describe training, not the network
_TRAINING_KEYS = ("layer_decay", "layer_decay_multi", "init")


class ModelConfigError(ValueError):
    """A model config that does not describe a network; the message names the field."""


def _ints(value: Any, n: int, field_name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ModelConfigError(f"model_config.{field_name} must be {n} integers, got {value!r}") from None
    if len(out) != n or min(out) <= 0:
        raise ModelConfigError(f"model_config.{field_name} must be {n} positive integers, got {list(out)}")
    return out


@dataclass(frozen=True)
class BackboneConfig:
    """Backbone: a named size from :mod:`multipose.models.registry` plus FFN, input size and overrides."""

    name: str
    ffn: str = "shared"
    num_experts: int = 1
    part_features: int | None = None
    img_size: tuple[int, int] = (256, 192)
    ratio: int = 1
    drop_path_rate: float | None = None  # None: the backbone's default (0)
    grad_checkpointing: bool = False
    knowledge_tokens: int = 0
    stem: str = "patch"  # patch (official) | conv (multipose.models.vit.ConvStem)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from multipose.models.registry import list_backbones
        from multipose.models.vit import STEMS

        if self.stem not in STEMS:
            raise ModelConfigError(
                f"model_config.backbone.stem={self.stem!r} is unknown; one of {list(STEMS)}"
            )

        if self.name not in list_backbones():
            raise ModelConfigError(
                f"model_config.backbone.name={self.name!r} is unknown; one of {list_backbones()}"
            )
        if self.ffn not in FFN_TYPES:
            raise ModelConfigError(
                f"model_config.backbone.ffn={self.ffn!r} is unknown; one of {list(FFN_TYPES)}"
            )
        if int(self.num_experts) < 1:
            raise ModelConfigError(f"model_config.backbone.num_experts must be >= 1, got {self.num_experts}")
        bad = sorted(set(self.overrides) - set(OVERRIDE_KEYS))
        if bad:
            raise ModelConfigError(
                f"model_config.backbone.overrides has unknown keys {bad}; allowed: {list(OVERRIDE_KEYS)}"
            )

    def kwargs(self) -> dict[str, Any]:
        """Arguments of :func:`multipose.models.registry.build_backbone` (besides ``name``)."""
        kw: dict[str, Any] = {
            "ffn": self.ffn,
            "img_size": tuple(self.img_size),
            "ratio": int(self.ratio),
            "grad_checkpointing": bool(self.grad_checkpointing),
        }
        if self.drop_path_rate is not None:
            kw["drop_path_rate"] = float(self.drop_path_rate)
        if self.ffn != "shared":
            kw["num_experts"] = int(self.num_experts)
        if self.ffn == "ps" and self.part_features is not None:
            kw["part_features"] = int(self.part_features)
        if self.stem != "patch":
            kw["stem"] = self.stem
        kw.update(self.overrides)
        return kw


@dataclass(frozen=True)
class HeadArch:
    """The architecture every head shares (the keypoint count is per head)."""

    type: str = "classic"
    deconv_filters: tuple[int, ...] | None = None  # classic heads: None = the head's default (256, 256)
    final_kernel: int | None = None  # classic heads: None = 1

    def __post_init__(self) -> None:
        if self.type not in HEAD_TYPES:
            raise ModelConfigError(
                f"model_config.head.type={self.type!r} is unknown; one of {list(HEAD_TYPES)}"
            )

    def kwargs(self) -> dict[str, Any]:
        """Extra arguments of :func:`multipose.models.heads.build_head`."""
        kw: dict[str, Any] = {}
        if self.type in ("classic", "classic_fp"):
            if self.deconv_filters is not None:
                kw["num_deconv_filters"] = tuple(self.deconv_filters)
            if self.final_kernel is not None:
                kw["final_conv_kernel"] = int(self.final_kernel)
        return kw

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.deconv_filters is not None:
            out["deconv_filters"] = list(self.deconv_filters)
        if self.final_kernel is not None:
            out["final_kernel"] = int(self.final_kernel)
        return out


@dataclass(frozen=True)
class HeadSpec:
    """One head: the dataset it is trained on (its name), the skeleton it predicts and its keypoint count."""

    name: str
    skeleton: str
    num_keypoints: int


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network without Hydra (see the module docstring for the dict form)."""

    backbone: BackboneConfig
    head: HeadArch
    heads: tuple[HeadSpec, ...]
    heatmap_size: tuple[int, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ModelConfigError(f"model_config.heads: head names must be unique, got {names}")

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    # ------------------------------------------------------------------ dict form
    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (what checkpoints store); :meth:`from_dict` reads it back to an equal config."""
        bb = self.backbone
        backbone: dict[str, Any] = {
            "name": bb.name,
            "ffn": bb.ffn,
            "num_experts": int(bb.num_experts),
            "part_features": bb.part_features,
            "img_size": list(bb.img_size),
            "ratio": int(bb.ratio),
            "drop_path_rate": bb.drop_path_rate,
            "grad_checkpointing": bool(bb.grad_checkpointing),
            "overrides": copy.deepcopy(dict(bb.overrides)),
        }
        if bb.knowledge_tokens:
            backbone["knowledge_tokens"] = int(bb.knowledge_tokens)
        if bb.stem != "patch":  # older checkpoints (and the official layout) have no stem key
            backbone["stem"] = bb.stem
        out: dict[str, Any] = {
            "backbone": backbone,
            "head": self.head.to_dict() if self.heads else {},
            "heads": {
                h.name: {"skeleton": h.skeleton, "num_keypoints": int(h.num_keypoints)} for h in self.heads
            },
        }
        if self.heatmap_size is not None:
            out["heatmap_size"] = list(self.heatmap_size)
        for key, value in self.extra.items():
            out.setdefault(key, copy.deepcopy(value))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | ModelConfig) -> ModelConfig:
        """Validate a stored model config (today's layout or an older one, see the module docstring)."""
        if isinstance(d, ModelConfig):
            return d
        if not isinstance(d, Mapping) or "backbone" not in d or "heads" not in d:
            raise ModelConfigError(
                f"model_config must be a mapping with 'backbone' and 'heads', got {str(d)[:200]}"
            )
        bb = dict(d["backbone"])
        if "name" not in bb:
            raise ModelConfigError("model_config.backbone.name is missing (a size such as vit_base)")
        overrides = dict(bb.pop("overrides", None) or {})
        for key in OVERRIDE_KEYS:  # older dicts gave dimensions next to the name
            if key in bb:
                overrides.setdefault(key, bb.pop(key))
        for key in _TRAINING_KEYS:
            bb.pop(key, None)
        ffn = bb.pop("ffn", "shared") or "shared"
        heads_d = d["heads"]
        if not isinstance(heads_d, Mapping):
            raise ModelConfigError(
                f"model_config.heads must map dataset -> {{skeleton, num_keypoints}}, got {heads_d!r}"
            )
        heads = []
        for name, spec in heads_d.items():
            if not isinstance(spec, Mapping) or "num_keypoints" not in spec:
                raise ModelConfigError(
                    f"model_config.heads.{name} needs skeleton and num_keypoints, got {spec!r}"
                )
            heads.append(HeadSpec(str(name), str(spec.get("skeleton", name)), int(spec["num_keypoints"])))
        num_experts = bb.pop("num_experts", None)
        num_experts = int(num_experts or (len(heads) if ffn != "shared" else 1))
        img_size = bb.pop("img_size", None)
        dpr = bb.pop("drop_path_rate", None)
        backbone = BackboneConfig(
            name=str(bb.pop("name")),
            ffn=ffn,
            num_experts=num_experts,
            part_features=None if bb.get("part_features") is None else int(bb.pop("part_features")),
            img_size=_ints(img_size, 2, "backbone.img_size") if img_size is not None else (256, 192),
            ratio=int(bb.pop("ratio", 1) or 1),
            drop_path_rate=None if dpr is None else float(dpr),
            grad_checkpointing=bool(bb.pop("grad_checkpointing", False)),
            knowledge_tokens=int(bb.pop("knowledge_tokens", 0) or 0),
            stem=str(bb.pop("stem", "patch") or "patch"),
            overrides=overrides,
        )
        bb.pop("part_features", None)
        if bb:
            raise ModelConfigError(
                f"model_config.backbone has unknown keys {sorted(bb)}; known: name, ffn, num_experts, part_features, "
                f"img_size, ratio, drop_path_rate, grad_checkpointing, knowledge_tokens, stem, overrides"
            )
        head_d = dict(d.get("head") or {"type": "classic"})
        filters = head_d.pop("deconv_filters", None)
        kernel = head_d.pop("final_kernel", None)
        head = HeadArch(
            type=str(head_d.pop("type", "classic")),
            deconv_filters=None if filters is None else tuple(int(f) for f in filters),
            final_kernel=None if kernel is None else int(kernel),
        )
        if head_d:
            raise ModelConfigError(f"model_config.head has unknown keys {sorted(head_d)}")
        hm = d.get("heatmap_size")
        extra = {
            k: copy.deepcopy(v)
            for k, v in d.items()
            if k not in ("backbone", "head", "heads", "heatmap_size")
        }
        return cls(backbone, head, tuple(heads), None if hm is None else _ints(hm, 2, "heatmap_size"), extra)

    # ------------------------------------------------------------------ derived configs
    def merged(self, head: str, mlp_ratio: float | None = None) -> ModelConfig:
        """The dense single-task model of ``head`` (:meth:`PoseModel.merge_experts`): shared FFN, that head only.
        ``mlp_ratio`` is the merged FFN's (it doubles for IS-FFN); None keeps the current one."""
        if head not in self.head_names:
            raise ModelConfigError(f"no head named {head!r}; heads: {', '.join(self.head_names)}")
        overrides = dict(self.backbone.overrides)
        if mlp_ratio is not None and mlp_ratio != overrides.get("mlp_ratio", 4.0):
            overrides["mlp_ratio"] = float(mlp_ratio)
        bb = replace(self.backbone, ffn="shared", num_experts=1, part_features=None, overrides=overrides)
        return replace(self, backbone=bb, heads=tuple(h for h in self.heads if h.name == head))


def model_config_from_hydra(cfg: Any, mix: Any) -> ModelConfig:
    """The model config of a training run: ``cfg.backbone`` and ``cfg.head`` of the composed Hydra config, and
    from the data mix (a DataModule or anything with ``dataset_names``, ``skeletons`` {name: Skeleton},
    ``input_size`` and ``heatmap_size``) one head per dataset, one expert per dataset, the input size.

    The Hydra groups also hold recipe keys (``backbone.layer_decay``, ``backbone.init``, ...); only the fields of
    :class:`BackboneConfig` / :class:`HeadArch` describe the network and go into the model config."""
    from dataclasses import fields

    from omegaconf import OmegaConf

    def plain(node: Any) -> dict[str, Any]:
        return dict(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node or {})

    names: Sequence[str] = list(mix.dataset_names)
    backbone_keys = {f.name for f in fields(BackboneConfig)}
    backbone = {k: v for k, v in plain(cfg.backbone).items() if k in backbone_keys}
    backbone["img_size"] = list(mix.input_size)
    backbone["num_experts"] = len(names)
    head = {k: v for k, v in plain(cfg.head).items() if k in {f.name for f in fields(HeadArch)}}
    heads = {
        n: {"skeleton": mix.skeletons[n].name, "num_keypoints": mix.skeletons[n].num_keypoints} for n in names
    }
    hm = getattr(mix, "heatmap_size", None)
    # pose-prompt tokens (data.prompt, multipose.models.prompt_tokens)
    prompt = mix.prompt_layout() if hasattr(mix, "prompt_layout") else None
    return ModelConfig.from_dict(
        {
            "backbone": backbone,
            "head": head,
            "heads": heads,
            **({"heatmap_size": list(hm)} if hm is not None else {}),
            **({"prompt": prompt} if prompt else {}),
        }
    )
