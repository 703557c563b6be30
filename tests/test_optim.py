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
    groups = param_groups_layer_decay(
        base_model, base_lr=1e-3, weight_decay=0.1, layer_decay=0.75, num_layers=12
    )
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
    for name in (
        "backbone.pos_embed",
        "backbone.blocks.3.attn.qkv.bias",
        "backbone.blocks.3.norm2.weight",
        "backbone.last_norm.weight",
        "heads.coco.deconv_layers.1.weight",
        "backbone.patch_embed.proj.bias",
    ):
        assert wd(name) == 0.0, name
    for name in (
        "backbone.patch_embed.proj.weight",
        "backbone.blocks.3.mlp.fc2.weight",
        "heads.coco.deconv_layers.0.weight",
        "heads.coco.final_layer.weight",
    ):
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


# ------------------------------------------------------------------ per-part LR multipliers and the builder


def _tiny_model(ffn: str = "ps") -> PoseModel:
    from multipose.models import build_pose_model

    return build_pose_model(
        {"syn_coco": "coco", "syn_mpii": "mpii"},
        backbone="vit_tiny",
        head="simple",
        ffn=ffn,
        img_size=(64, 48),
        embed_dim=32,
        depth=2,
        num_heads=2,
    )


def test_module_lr_mult_scales_the_named_parts_only():
    model = _tiny_model()
    plain = param_groups_layer_decay(model, 1e-3, 0.05, 0.5, 2)
    mult = param_groups_layer_decay(
        model, 1e-3, 0.05, 0.5, 2, module_lr_mult={"backbone": 0.1, "heads": 2.0, "heads.syn_mpii": 0.0}
    )
    for name, _ in model.named_parameters():
        before, after = _group_of(plain, name), _group_of(mult, name)
        if name.startswith("heads.syn_mpii."):
            factor = 0.0  # the most specific key wins
        elif name.startswith("heads."):
            factor = 2.0
        elif ".experts." in name:
            factor = 1.0  # experts are their own part, not named here
        else:
            factor = 0.1
        assert after["lr"] == pytest.approx(before["lr"] * factor), name
        assert after["lr_scale"] == pytest.approx(before["lr_scale"] * factor), name
        assert after["weight_decay"] == before["weight_decay"], name
    assert any(g["group_name"].endswith("_heads.syn_mpii") for g in mult)


def test_module_lr_mult_unknown_part_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"optim.module_lr_mult.*'neck'.*valid parts.*'heads.syn_coco'"):
        param_groups_layer_decay(_tiny_model(), 1e-3, 0.05, 0.5, 2, module_lr_mult={"neck": 0.1})


def _reference_lrs(model, cfg, batch_size, total_steps, max_epochs, steps):
    """The LR of every group at ``steps``, computed with the formulas configure_optimizers used before the
    builder existed (lr scaling, layer decay, milestones as fractions of max_epochs, warm-up, step decay)."""
    lr = cfg["lr"] * (batch_size / cfg["base_batch_size"] if cfg["scale_lr"] else 1.0)
    spe = max(total_steps // max_epochs, 1)
    milestones = [int(round(m * max_epochs)) * spe if m < 1 else int(m) * spe for m in cfg["milestones"]]
    depth, out = model.backbone.depth, {}
    for name, _ in model.named_parameters():
        scale = cfg["layer_decay"] ** (depth + 2 - layer_id_for(name, depth) - 1)
        rows = []
        for s in steps:
            w = (
                1 - (1 - s / cfg["warmup_iters"]) * (1 - cfg["warmup_ratio"])
                if s < cfg["warmup_iters"]
                else 1.0
            )
            rows.append(lr * scale * w * cfg["gamma"] ** sum(s >= m for m in milestones))
        out[name] = rows
    return out


@pytest.mark.parametrize("optim", ["adamw_cpu", "vitpose", "vitpose_pp"])
def test_builder_keeps_the_numbers_of_the_shipped_configs(optim):
    from omegaconf import OmegaConf

    from conftest import compose
    from multipose.models.optim import build_optimizer

    cfg = OmegaConf.to_container(
        compose("train", [f"optim={optim}", "backbone.layer_decay=0.75"]).optim, resolve=True
    )
    model = _tiny_model()
    total_steps, max_epochs, batch = 1100, 11, 32
    built = build_optimizer(model, cfg, batch_size=batch, total_steps=total_steps, max_epochs=max_epochs)
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert built["lr_scheduler"]["interval"] == "step"
    assert [g["weight_decay"] for g in opt.param_groups] == [
        g["weight_decay"] for g in param_groups_layer_decay(model, 1.0, cfg["weight_decay"], 0.75, 2)
    ]
    steps = [0, 1, cfg["warmup_iters"] // 2, 400, 899, 900, 999, 1000, 1099]
    expected = _reference_lrs(model, cfg, batch, total_steps, max_epochs, steps)
    seen = {n: [] for n in expected}
    for s in range(max(steps) + 1):
        if s in steps:
            for g in opt.param_groups:
                for n in g["param_names"]:
                    seen[n].append(g["lr"])
        opt.step()
        sched.step()
    for name in expected:
        assert seen[name] == pytest.approx(expected[name], rel=1e-12), name


def test_module_lr_mult_from_the_command_line():
    from omegaconf import OmegaConf

    from conftest import compose
    from multipose.models.optim import build_optimizer

    override = "optim.module_lr_mult={backbone: 0.1, heads.syn_mpii: 2.0}"
    cfg = OmegaConf.to_container(compose("train", [override]).optim, resolve=True)
    model = _tiny_model()
    opt = build_optimizer(model, cfg, batch_size=32, total_steps=10, max_epochs=1)["optimizer"]
    base = {
        n: g["lr_scale"]
        for g in param_groups_layer_decay(model, 1.0, 0.0, cfg["layer_decay"], 2)
        for n in g["param_names"]
    }
    for g in opt.param_groups:
        for n in g["param_names"]:
            mult = (
                2.0
                if n.startswith("heads.syn_mpii.")
                else 1.0
                if n.startswith("heads.") or ".experts." in n
                else 0.1
            )
            assert g["lr_scale"] == pytest.approx(base[n] * mult), n
