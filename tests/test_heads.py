"""Heatmap heads (official key names, sizes, init) and the multi-head PoseModel."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from multipose.models import (
    ClassicHead,
    MinimalHead,
    PoseModel,
    SimpleHead,
    ViTPoseBackbone,
    build_head,
    build_pose_model,
    upsample_for_stride,
)


def test_classic_head_official_keys_and_shapes():
    head = ClassicHead(768, 17)
    sd = head.state_dict()
    assert sd["deconv_layers.0.weight"].shape == (768, 256, 4, 4)
    assert "deconv_layers.0.bias" not in sd and "deconv_layers.3.bias" not in sd
    assert sd["deconv_layers.1.running_var"].shape == (256,)
    assert sd["deconv_layers.3.weight"].shape == (256, 256, 4, 4)
    assert sd["deconv_layers.4.weight"].shape == (256,)
    assert sd["final_layer.weight"].shape == (17, 256, 1, 1)
    assert isinstance(head.deconv_layers[2], torch.nn.ReLU) and isinstance(
        head.deconv_layers[5], torch.nn.ReLU
    )
    # mmpose init
    assert 0.0007 < head.deconv_layers[0].weight.std().item() < 0.0013
    assert torch.all(head.deconv_layers[1].weight == 1) and torch.all(head.deconv_layers[1].bias == 0)
    assert torch.all(head.final_layer.bias == 0)
    with torch.no_grad():
        assert head.eval()(torch.randn(2, 768, 16, 12)).shape == (2, 17, 64, 48)


def test_small_filters_and_other_upsampling():
    head = ClassicHead(96, 5, num_deconv_filters=(64, 64))
    with torch.no_grad():
        assert head.eval()(torch.randn(1, 96, 8, 6)).shape == (1, 5, 32, 24)
    h2 = ClassicHead(96, 5, num_deconv_filters=(64,), upsample=2)
    assert len(h2.deconv_layers) == 3
    assert h2.eval()(torch.randn(1, 96, 8, 6)).shape == (1, 5, 16, 12)
    with pytest.raises(ValueError, match="deconv filter"):
        ClassicHead(96, 5, num_deconv_filters=(64,), upsample=4)
    with pytest.raises(ValueError, match="power of two"):
        ClassicHead(96, 5, upsample=3)


def test_classic_fp_freezes_the_predictor_only():
    head = build_head("classic_fp", 96, 7, num_deconv_filters=(32, 32))
    assert not head.final_layer.weight.requires_grad and not head.final_layer.bias.requires_grad
    assert all(p.requires_grad for p in head.deconv_layers.parameters())
    assert head.final_layer.weight.std().item() > 0.01  # random projection, not the 0.001 init
    out = head(torch.randn(2, 96, 4, 3))
    out.sum().backward()
    assert head.final_layer.weight.grad is None and head.deconv_layers[0].weight.grad is not None


def test_simple_head_is_relu_bilinear_conv3x3():
    head = SimpleHead(48, 6)
    assert set(head.state_dict()) == {"final_layer.weight", "final_layer.bias"}
    assert head.final_layer.kernel_size == (3, 3)
    x = torch.randn(2, 48, 4, 3)
    expected = head.final_layer(
        F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
    )
    assert torch.allclose(head(x), expected)
    assert head(x).shape == (2, 6, 16, 12)


def test_minimal_head_pixel_shuffle_layout():
    head = MinimalHead(8, 3)
    assert head.final_layer.out_channels == 3 * 16
    with torch.no_grad():
        head.final_layer.weight.zero_()
        head.final_layer.bias.copy_(torch.arange(48.0))
    out = head(torch.zeros(1, 8, 2, 2))
    assert out.shape == (1, 3, 8, 8)
    # keypoint k, sub-pixel (i, j) comes from channel k*16 + i*4 + j, in every 4x4 cell
    for k, i, j in [(0, 0, 0), (1, 2, 3), (2, 3, 1)]:
        assert out[0, k, 4 + i, j].item() == k * 16 + i * 4 + j


def test_upsampling_follows_backbone_stride():
    assert upsample_for_stride(16) == 4 and upsample_for_stride(8) == 2 and upsample_for_stride(4) == 1
    with pytest.raises(ValueError):
        upsample_for_stride(6)
    bb = ViTPoseBackbone(img_size=(128, 96), embed_dim=48, depth=1, num_heads=3, ratio=2)
    model = build_pose_model(
        {"a": SimpleNamespace(name="s", num_keypoints=4)},
        backbone=bb,
        head_kwargs={"num_deconv_filters": (16,)},
    )
    with torch.no_grad():
        assert model.eval().heatmaps(torch.randn(1, 3, 128, 96))["a"].shape == (1, 4, 32, 24)


# ------------------------------------------------------------------ PoseModel
SKELS = {
    "syn_coco": SimpleNamespace(name="coco", num_keypoints=5),
    "syn_mpii": SimpleNamespace(name="mpii", num_keypoints=4),
    "syn_ap10k": SimpleNamespace(name="ap10k", num_keypoints=3),
}


def _model(ffn="ps", head="classic", seed=0) -> PoseModel:
    torch.manual_seed(seed)
    model = build_pose_model(
        SKELS,
        backbone="vit_tiny",
        head=head,
        ffn=ffn,
        depth=2,
        img_size=(64, 48),
        drop_path_rate=0.0,
        head_kwargs={"num_deconv_filters": (16, 16)} if head.startswith("classic") else None,
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # break the expert symmetry and the tiny head init
        for name, p in model.named_parameters():
            if "experts" in name or "final_layer" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def test_pose_model_layout_and_heatmaps():
    model = _model()
    assert model.dataset_names == ["syn_coco", "syn_mpii", "syn_ap10k"]
    assert model.head_skeletons == {"syn_coco": "coco", "syn_mpii": "mpii", "syn_ap10k": "ap10k"}
    assert model.backbone.num_experts == 3 and model.backbone.ffn == "ps"
    x = torch.randn(4, 3, 64, 48)
    idx = torch.tensor([1, 0, 2, 1])
    with torch.no_grad():
        feats = model(x, idx)
        hms = model.heatmaps(x, idx)
        routed = model.routed_heatmaps(x, idx)
    assert feats.shape == (4, 192, 4, 3)
    assert {k: tuple(v.shape) for k, v in hms.items()} == {
        "syn_coco": (4, 5, 16, 12),
        "syn_mpii": (4, 4, 16, 12),
        "syn_ap10k": (4, 3, 16, 12),
    }
    assert list(model.heatmaps(x, idx, head_names=["syn_mpii"])) == ["syn_mpii"]
    index, hm = routed["syn_mpii"]
    assert index.tolist() == [0, 3] and torch.allclose(hm, hms["syn_mpii"][index], atol=1e-6)
    with pytest.raises(KeyError, match="syn_coco"):
        model.heatmaps(x, idx, head_names=["coco"])


def test_head_size_must_match_skeleton():
    bb = ViTPoseBackbone(img_size=(64, 48), embed_dim=48, depth=1, num_heads=3)
    with pytest.raises(ValueError, match="syn_mpii.*4 keypoints.*'mpii' has 16"):
        PoseModel(
            bb, {"syn_mpii": SimpleHead(48, 4)}, {"syn_mpii": SimpleNamespace(name="mpii", num_keypoints=16)}
        )
    with pytest.raises(ValueError, match="missing"):
        PoseModel(bb, {"a": SimpleHead(48, 4)}, {"b": SimpleNamespace(name="mpii", num_keypoints=4)})


def test_expert_count_must_match_heads():
    bb = ViTPoseBackbone(img_size=(64, 48), embed_dim=48, depth=1, num_heads=3, ffn="ps", num_experts=2)
    with pytest.raises(ValueError, match="2 task experts"):
        PoseModel(bb, {"a": SimpleHead(48, 4)})


def test_predict_heatmaps_picks_head_and_expert():
    model = _model()
    x = torch.randn(2, 3, 64, 48)
    by_skel = model.predict_heatmaps(x, skeleton="mpii")
    by_name = model.predict_heatmaps(x, head="syn_mpii")
    with torch.no_grad():
        expected = model.heatmaps(x, torch.tensor([1, 1]), head_names=["syn_mpii"])["syn_mpii"]
    assert torch.allclose(by_skel, expected) and torch.allclose(by_name, expected)
    with pytest.raises(KeyError, match="syn_coco \\(coco\\)"):
        model.predict_heatmaps(x, skeleton="wholebody")
    with pytest.raises(ValueError, match="pass head="):
        model.predict_heatmaps(x)
    dup = build_pose_model(
        {"a": SKELS["syn_coco"], "b": SKELS["syn_coco"]},
        backbone="vit_tiny",
        head="simple",
        depth=1,
        img_size=(64, 48),
    )
    with pytest.raises(ValueError, match="several heads"):
        dup.predict_heatmaps(x, skeleton="coco")


@pytest.mark.parametrize("ffn", ["ps", "independent"])
def test_pose_model_merge_experts_equals_moe_path(ffn):
    model = _model(ffn=ffn, seed=1)
    x = torch.randn(3, 3, 64, 48)
    for i, name in enumerate(model.dataset_names):
        merged = model.merge_experts(name)
        assert merged.dataset_names == [name] and merged.backbone.ffn == "shared"
        assert merged.head_skeletons == {name: SKELS[name].name}
        assert not merged.training
        with torch.no_grad():
            ref = model.heatmaps(x, torch.full((3,), i), head_names=[name])[name]
            out = merged.predict_heatmaps(x)
        assert (out - ref).abs().max().item() < 1e-5
        assert merged.merge_experts(0).heads[name].num_keypoints == SKELS[name].num_keypoints
    # the merged copy shares no storage with the original
    before = model.predict_heatmaps(x, head=model.dataset_names[0])
    merged = model.merge_experts(0)
    with torch.no_grad():
        for p in merged.parameters():
            p.zero_()
    assert torch.equal(model.predict_heatmaps(x, head=model.dataset_names[0]), before)


@pytest.mark.parametrize("head", ["classic", "classic_fp", "simple", "minimal"])
def test_every_head_type_gives_quarter_resolution(head):
    model = _model(head=head)
    with torch.no_grad():
        out = model.heatmaps(torch.randn(1, 3, 64, 48), torch.tensor([0]))
    assert all(v.shape[-2:] == (16, 12) for v in out.values())


def test_skeleton_names_resolve_through_the_registry():
    model = build_pose_model(
        {"my_coco": "coco", "my_mpii": "mpii"},
        backbone="vit_tiny",
        head="simple",
        depth=1,
        img_size=(64, 48),
        ffn="ps",
    )
    assert model.heads["my_coco"].num_keypoints == 17 and model.heads["my_mpii"].num_keypoints == 16
    assert model.backbone.num_experts == 2
    assert model.resolve_head(skeleton="mpii") == "my_mpii"
    with pytest.raises(ValueError, match="my_coco.*3 keypoints.*'coco' has 17"):
        PoseModel(
            model.backbone,
            {"my_coco": SimpleHead(192, 3), "my_mpii": SimpleHead(192, 16)},
            {"my_coco": "coco", "my_mpii": "mpii"},
        )
