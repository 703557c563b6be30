"""Build a :class:`~multipose.models.pose_model.PoseModel` from a :class:`~multipose.models.model_config.ModelConfig`
(or its plain-dict form, which training stores in every checkpoint as ``hyper_parameters["model_config"]``), so a
model can be rebuilt without Hydra."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multipose.models.model_config import ModelConfig
from multipose.models.pose_model import PoseModel, build_pose_model
from multipose.models.registry import build_backbone


def model_from_config(model_config: ModelConfig | Mapping[str, Any]) -> PoseModel:
    """Build the network described by ``model_config`` (weights freshly initialised)."""
    cfg = ModelConfig.from_dict(model_config)
    if not cfg.heads:
        raise ValueError("model_config.heads is empty: a model needs one head per dataset of the mix")
    backbone = build_backbone(cfg.backbone.name, **cfg.backbone.kwargs())
    model = build_pose_model(
        {h.name: h.skeleton for h in cfg.heads},
        backbone=backbone,
        head=cfg.head.type,
        num_keypoints={h.name: h.num_keypoints for h in cfg.heads},
        head_kwargs=cfg.head.kwargs(),
    )
    if cfg.backbone.knowledge_tokens:
        from multipose.models.knowledge_token import attach_knowledge_tokens

        attach_knowledge_tokens(model, num_tokens=cfg.backbone.knowledge_tokens, trainable=False)
    if cfg.extra.get("prompt"):
        from multipose.models.prompt_tokens import attach_prompt_encoder

        attach_prompt_encoder(model, cfg.extra["prompt"])
    return model
