"""Build a :class:`~multipose.models.pose_model.PoseModel` from the plain-dict ``model_config`` that training
stores in every checkpoint (``hyper_parameters["model_config"]``), so a model can be rebuilt without Hydra.

Schema::

    backbone: {name: vit_tiny|vit_small|..., ffn: shared|ps|independent|shared_independent,
               part_features: int|null, drop_path_rate: float, ratio: int, grad_checkpointing: bool,
               img_size: [H, W], num_experts: int, overrides: {embed_dim: ..., depth: ..., ...}}
    head:     {type: classic|classic_fp|simple|minimal, deconv_filters: [..], final_kernel: 1|3}
    heads:    {<dataset name>: {skeleton: <skeleton name>, num_keypoints: K}, ...}   # mix order
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multipose.models.pose_model import PoseModel, build_pose_model
from multipose.models.registry import build_backbone

# config keys that describe training, not the architecture
_NON_ARCH_KEYS = {"name", "layer_decay", "init", "overrides", "num_experts", "knowledge_tokens"}


def model_from_config(model_config: Mapping[str, Any]) -> PoseModel:
    """Build the network described by ``model_config`` (weights freshly initialised)."""
    bb_cfg = dict(model_config["backbone"])
    heads_cfg = dict(model_config["heads"])
    if not heads_cfg:
        raise ValueError("model_config.heads is empty: a model needs one head per dataset of the mix")
    ffn = bb_cfg.get("ffn", "shared")
    kwargs: dict[str, Any] = {k: v for k, v in bb_cfg.items() if k not in _NON_ARCH_KEYS and v is not None}
    kwargs.update(dict(bb_cfg.get("overrides") or {}))
    if ffn != "shared":
        kwargs["num_experts"] = int(bb_cfg.get("num_experts") or len(heads_cfg))
    if "img_size" in kwargs:
        kwargs["img_size"] = tuple(int(v) for v in kwargs["img_size"])
    backbone = build_backbone(bb_cfg["name"], **kwargs)

    head_cfg = dict(model_config.get("head") or {"type": "classic"})
    head_type = head_cfg.pop("type", "classic")
    head_kwargs: dict[str, Any] = {}
    if head_type in ("classic", "classic_fp"):
        if "deconv_filters" in head_cfg:
            head_kwargs["num_deconv_filters"] = tuple(int(f) for f in head_cfg["deconv_filters"])
        if "final_kernel" in head_cfg:
            head_kwargs["final_conv_kernel"] = int(head_cfg["final_kernel"])
    datasets = {name: spec["skeleton"] for name, spec in heads_cfg.items()}
    num_keypoints = {name: int(spec["num_keypoints"]) for name, spec in heads_cfg.items()}
    model = build_pose_model(
        datasets, backbone=backbone, head=head_type, num_keypoints=num_keypoints, head_kwargs=head_kwargs
    )
    if int(bb_cfg.get("knowledge_tokens") or 0):
        from multipose.models.knowledge_token import attach_knowledge_tokens

        attach_knowledge_tokens(model, num_tokens=int(bb_cfg["knowledge_tokens"]), trainable=False)
    return model
