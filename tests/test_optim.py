"""Layer-wise lr decay groups: the ViTPose LayerDecayOptimizerConstructor rule."""

from __future__ import annotations

import pytest
import torch

from multipose.models import (
    PoseModel,
    build_backbone,
    build_head,
    layer_id_for,
    param_groups_layer_decay,
    scale_lr,
)


def _group_of(groups, name):
    hits = [g for g in groups if name in g["param_names"]]
    assert len(hits) == 1, name
    return hits[0]


@pytest.fixture(scope="module")
def base_model():
    with torch.device("meta"):  # vit_base without allocating weights
        bb = build_backbone("vit_base", ffn="ps", num_experts=2)
        heads = {"coco": build_head("classic", 768, 17), "aic": build_head("classic_fp", 768, 14)}
        return PoseModel(bb, heads)


def test_vit_base_lr_scales(base_model):
    groups = param_groups_layer_decay(base_model, base_lr=1e-3, weight_decay=0.1, layer_decay=0.75, num_layers=12)
    scale = lambda n: _group_of(groups, n)["lr_scale"]  # noqa: E731
    assert scale("backbone.blocks.0.attn.qkv.weight") == pytest.approx(0.75**12)  # 0.0317
    assert scale("backbone.blocks.0.attn.qkv.weight") == pytest.approx(0.0317, abs=1e-4)
    assert scale("backbone.blocks.11.mlp.experts.1.weight") == pytest.approx(0.75)
    assert scale("backbone.patch_embed.proj.weight") == pytest.approx(0.75**13)  # 0.0238
    assert scale("backbone.pos_embed") == pytest.approx(0.0238, abs=1e-4)
    assert scale("backbone.last_norm.weight") == 1.0
    assert scale("heads.coco.final_layer.weight") == 1.0
    g = _group_of(groups, "backbone.blocks.5.norm1.weight")
    assert g["lr"] == pytest.approx(1e-3 * 0.75**7) and g["weight_decay"] == 0.0
    assert g["group_name"] == "layer_6_no_decay"


def test_weight_decay_exclusions(base_model):
    groups = param_groups_layer_decay(base_model, 5e-4, 0.1, 0.75, 12)
    wd = lambda n: _group_of(groups, n)["weight_decay"]  # noqa: E731
    for name in ("backbone.pos_embed", "backbone.blocks.3.attn.qkv.bias", "backbone.blocks.3.norm2.weight",
                 "backbone.last_norm.weight", "heads.coco.deconv_layers.1.weight", "backbone.patch_embed.proj.bias"):
        assert wd(name) == 0.0, name
    for name in ("backbone.patch_embed.proj.weight", "backbone.blocks.3.mlp.fc2.weight",
                 "heads.coco.deconv_layers.0.weight", "heads.coco.final_layer.weight"):
        assert wd(name) == 0.1, name


def test_every_trainable_param_once_frozen_excluded(base_model):
    groups = param_groups_layer_decay(base_model, 5e-4, 0.1, 0.75, 12)
    names = [n for g in groups for n in g["param_names"]]
    trainable = [n for n, p in base_model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable)
    assert "heads.aic.final_layer.weight" not in names  # classic-FP predictor is frozen
    assert len(groups) == 2 * 14  # layers 0..13, each with a decay and a no_decay group
    assert all(len(g["params"]) == len(g["param_names"]) for g in groups)


def test_works_on_wrapped_model_and_bare_backbone_and_with_torch_optimizer():
    bb = build_backbone("vit_tiny", depth=2, img_size=(64, 48))
    wrapper = torch.nn.Module()
    wrapper.model = PoseModel(bb, {"a": build_head("simple", 192, 3)})
    g_wrapped = param_groups_layer_decay(wrapper, 1e-3, 0.05, 0.5, 2)
    g_bare = param_groups_layer_decay(bb, 1e-3, 0.05, 0.5, 2)
    assert _group_of(g_wrapped, "model.backbone.blocks.1.mlp.fc1.weight")["lr_scale"] == pytest.approx(0.5)
    assert _group_of(g_bare, "blocks.1.mlp.fc1.weight")["lr_scale"] == pytest.approx(0.5)
    assert _group_of(g_bare, "patch_embed.proj.weight")["lr_scale"] == pytest.approx(0.125)
    assert _group_of(g_wrapped, "model.heads.a.final_layer.weight")["lr_scale"] == 1.0
    opt = torch.optim.AdamW(g_wrapped, lr=1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.125)


def test_layer_id_rule_and_errors():
    assert layer_id_for("backbone.cls_token", 12) == 0
    assert layer_id_for("backbone.blocks.0.norm1.weight", 12) == 1
    assert layer_id_for("backbone.blocks.11.norm1.weight", 12) == 12
    assert layer_id_for("backbone.last_norm.bias", 12) == 13
    assert layer_id_for("heads.coco.final_layer.weight", 12) == 13
    with pytest.raises(ValueError, match="num_layers"):
        layer_id_for("backbone.blocks.12.norm1.weight", 12)
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups_layer_decay(torch.nn.Linear(2, 2), 1e-3, 0.1, 1.5, 12)


def test_scale_lr():
    assert scale_lr(5e-4, 256) == pytest.approx(2.5e-4)
    assert scale_lr(1e-3, 1024, base_batch=1024) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        scale_lr(1e-3, 0)
