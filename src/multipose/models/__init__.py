"""Models: ViTPose / ViTPose++ backbone, FFN variants, heatmap heads, the multi-head PoseModel, optimiser groups."""

from multipose.models.heads import (
    HEAD_TYPES,
    ClassicHead,
    MinimalHead,
    SimpleHead,
    build_head,
    upsample_for_stride,
)
from multipose.models.model_config import ModelConfig, model_config_from_hydra
from multipose.models.moe import (
    FFN_TYPES,
    IndependentMlp,
    PartiallySharedMlp,
    SharedIndependentMlp,
    TaskRouting,
    build_ffn,
    merge_ffn,
)
from multipose.models.optim import layer_id_for, param_groups_layer_decay, scale_lr
from multipose.models.pose_model import PoseModel, build_pose_model
from multipose.models.registry import (
    BACKBONES,
    BackboneSpec,
    build_backbone,
    get_backbone_spec,
    list_backbones,
)
from multipose.models.vit import ViTPoseBackbone, ViTPoseBlock, resize_pos_embed, token_grid

__all__ = [
    "BACKBONES",
    "FFN_TYPES",
    "HEAD_TYPES",
    "BackboneSpec",
    "ClassicHead",
    "IndependentMlp",
    "MinimalHead",
    "ModelConfig",
    "PartiallySharedMlp",
    "PoseModel",
    "SharedIndependentMlp",
    "SimpleHead",
    "TaskRouting",
    "ViTPoseBackbone",
    "ViTPoseBlock",
    "build_backbone",
    "build_ffn",
    "build_head",
    "build_pose_model",
    "get_backbone_spec",
    "layer_id_for",
    "list_backbones",
    "merge_ffn",
    "model_config_from_hydra",
    "param_groups_layer_decay",
    "resize_pos_embed",
    "scale_lr",
    "token_grid",
    "upsample_for_stride",
]
