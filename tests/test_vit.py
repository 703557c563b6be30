"""ViTPose backbone: official layout, parity with stock timm, pos-embed resizing, named sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from multipose.models import (
    ViTPoseBackbone,
    build_backbone,
    get_backbone_spec,
    list_backbones,
    resize_pos_embed,
)
from multipose.models.vit import token_grid


def _tiny(**kw) -> ViTPoseBackbone:
    cfg = dict(img_size=(128, 96), embed_dim=96, depth=3, num_heads=3, drop_path_rate=0.0)
    cfg.update(kw)
    return ViTPoseBackbone(**cfg)


def _randomise_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter (incl. LayerNorm and the cls slot) non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.05
            p.copy_(noise + 1.0 if "norm" in name and name.endswith("weight") else noise)


def test_matches_stock_timm_vision_transformer():
    torch.manual_seed(0)
    ours = _tiny().eval()
    _randomise_(ours)
    c, (h, w) = ours.embed_dim, ours.grid_size
    ref = VisionTransformer(
        img_size=(128, 96),
        patch_size=16,
        embed_dim=c,
        depth=3,
        num_heads=3,
        mlp_ratio=4,
        qkv_bias=True,
        class_token=False,
        global_pool="",
        num_classes=0,
    ).eval()
    ref.patch_embed.proj.padding = (2, 2)
    sd = ours.state_dict()
    pos = sd.pop("pos_embed")
    sd["pos_embed"] = pos[:, 1:] + pos[:, :1]
    for k in ("weight", "bias"):
        sd[f"norm.{k}"] = sd.pop(f"last_norm.{k}")
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and all(
        not k.startswith(("blocks", "patch_embed", "norm", "pos_embed")) for k in missing
    )
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        expected = ref.forward_features(x).transpose(1, 2).reshape(2, c, h, w)
        got = ours(x)
    assert got.shape == (2, c, 8, 6)
    assert (got - expected).abs().max().item() < 1e-5
    # the padding matters: without it the features differ completely
    ref.patch_embed.proj.padding = (0, 0)
    with torch.no_grad():
        off = ref.forward_features(x).transpose(1, 2).reshape(2, c, h, w)
    assert (off - got).abs().max().item() > 1e-2


def test_official_parameter_names_and_shapes():
    m = _tiny(ffn="ps", num_experts=2)
    sd = m.state_dict()
    c = 96
    assert sd["patch_embed.proj.weight"].shape == (c, 3, 16, 16)
    assert sd["pos_embed"].shape == (1, 1 + 8 * 6, c)
    assert sd["blocks.0.attn.qkv.weight"].shape == (3 * c, c)
    assert sd["blocks.0.attn.qkv.bias"].shape == (3 * c,)
    assert sd["blocks.2.mlp.fc1.weight"].shape == (4 * c, c)
    assert sd["blocks.2.mlp.fc2.weight"].shape == (c - c // 4, 4 * c)
    assert sd["blocks.2.mlp.experts.1.weight"].shape == (c // 4, 4 * c)
    assert {
        "last_norm.weight",
        "blocks.1.norm1.weight",
        "blocks.1.norm2.bias",
        "blocks.1.attn.proj.weight",
    } <= set(sd)
    assert "cls_token" not in sd
    for blk in m.blocks:
        assert blk.norm1.eps == 1e-6 and blk.norm2.eps == 1e-6
    assert m.last_norm.eps == 1e-6


def test_patch_embed_geometry_follows_official_ratio_formula():
    assert token_grid((256, 192)) == (16, 12)
    m1 = ViTPoseBackbone(img_size=(256, 192), embed_dim=48, depth=1, num_heads=3)
    assert m1.patch_embed.proj.stride == (16, 16) and m1.patch_embed.proj.padding == (2, 2)
    assert m1.grid_size == (16, 12) and m1.stride == 16
    m2 = ViTPoseBackbone(img_size=(256, 192), embed_dim=48, depth=1, num_heads=3, ratio=2)
    assert m2.patch_embed.proj.stride == (8, 8) and m2.patch_embed.proj.padding == (4, 4)
    assert m2.grid_size == (32, 24) and m2.stride == 8
    with torch.no_grad():
        assert m2.eval()(torch.randn(1, 3, 256, 192)).shape == (1, 48, 32, 24)
    with pytest.raises(ValueError, match="ratio"):
        ViTPoseBackbone(embed_dim=48, depth=1, num_heads=3, ratio=3)


def test_cls_slot_is_added_to_every_token():
    m = _tiny(depth=1)
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        m.pos_embed.zero_()
        base, _ = m.tokens(x)
        m.pos_embed[0, 0] = torch.arange(96.0)
        shifted, _ = m.tokens(x)
    assert shifted.shape == (1, 48, 96)
    assert torch.allclose(shifted - base, torch.arange(96.0).expand(48, 96), atol=1e-5)


def test_sdpa_attention_is_used(monkeypatch):
    m = _tiny(depth=2).eval()
    assert all(blk.attn.fused_attn for blk in m.blocks)
    calls = []
    real = F.scaled_dot_product_attention

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        m(torch.randn(1, 3, 128, 96))
    assert len(calls) == 2


def test_drop_path_linspace():
    m = _tiny(depth=4, drop_path_rate=0.3)
    rates = [getattr(blk.drop_path1, "drop_prob", 0.0) for blk in m.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [getattr(blk.drop_path2, "drop_prob", 0.0) for blk in m.blocks] == pytest.approx(rates)


def test_resize_pos_embed_helper():
    c = 8
    pos = torch.randn(1, 1 + 4 * 3, c)
    assert resize_pos_embed(pos, (4, 3), (4, 3)) is pos
    out = resize_pos_embed(pos, (4, 3), (8, 6))
    assert out.shape == (1, 1 + 48, c)
    assert torch.equal(out[:, :1], pos[:, :1])  # cls slot kept as is
    const = torch.cat([torch.zeros(1, 1, c), torch.full((1, 12, c), 0.7)], 1)
    assert torch.allclose(resize_pos_embed(const, (4, 3), (7, 5))[:, 1:], torch.tensor(0.7), atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        resize_pos_embed(pos, (4, 4), (8, 6))


def test_runtime_pos_embed_resize_for_other_input_size():
    torch.manual_seed(1)
    m = _tiny(depth=2).eval()
    x = torch.randn(2, 3, 192, 128)  # grid 12x8 instead of 8x6
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 96, 12, 8)
    other = _tiny(depth=2, img_size=(192, 128)).eval()
    sd = m.state_dict()
    sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], m.grid_size, other.grid_size)
    other.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(other(x), y, atol=1e-6)


def test_gradient_checkpointing_same_output_and_grads():
    torch.manual_seed(2)
    m = _tiny(depth=2, ffn="ps", num_experts=2).eval()
    x = torch.randn(3, 3, 128, 96)
    idx = torch.tensor([1, 0, 1])
    y1 = m(x, idx)
    y1.square().mean().backward()
    g1 = m.blocks[0].mlp.experts[1].weight.grad.clone()
    m.zero_grad()
    m.set_grad_checkpointing(True)
    y2 = m(x, idx)
    y2.square().mean().backward()
    assert torch.allclose(y1, y2, atol=1e-6)
    assert torch.allclose(g1, m.blocks[0].mlp.experts[1].weight.grad, atol=1e-7)


def test_routed_backbone_needs_valid_dataset_idx():
    m = _tiny(depth=1, ffn="ps", num_experts=3).eval()
    x = torch.randn(2, 3, 128, 96)
    with pytest.raises(ValueError, match="dataset_idx"):
        m(x)
    with pytest.raises(ValueError, match="outside"):
        m(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="entries"):
        m(x, torch.tensor([0, 1, 2]))
    # a shared FFN ignores dataset_idx; a single-expert routed FFN does not need it
    _tiny(depth=1)(x, torch.tensor([5, 7]))
    _tiny(depth=1, ffn="ps", num_experts=1)(x)


def test_named_sizes():
    assert list_backbones() == ["vit_tiny", "vit_small", "vit_base", "vit_large", "vit_huge"]
    s = get_backbone_spec("vit_small")
    assert (s.embed_dim, s.depth, s.num_heads, s.part_features) == (384, 12, 12, 96)
    # recipe numbers (drop path, layer decay) are in conf/backbone/: tests/test_recipe.py
    with pytest.raises(ValueError, match="vit_base"):
        get_backbone_spec("vit_giant")
    with torch.device("meta"):
        small = build_backbone("vit_small", ffn="ps", num_experts=6)
        base = build_backbone("vit_base")
    assert small.blocks[0].attn.num_heads == 12 and small.blocks[0].attn.head_dim == 32
    assert small.blocks[0].mlp.part_features == 96
    assert small.blocks[0].mlp.fc2.out_features == 288
    n_base = sum(p.numel() for p in base.parameters()) / 1e6
    assert abs(n_base - 86) / 86 < 0.02
    with torch.device("meta"):
        small_dense = build_backbone("vit_small")
    n_small = sum(p.numel() for p in small_dense.parameters()) / 1e6
    assert abs(n_small - 22) / 22 < 0.03
    # the PS-FFN keeps the dense size apart from the extra experts
    n_ps = sum(p.numel() for p in small.parameters())
    extra = 12 * 5 * (96 * 1536 + 96)
    assert n_ps - extra == sum(p.numel() for p in small_dense.parameters())


def test_registry_overrides():
    m = build_backbone("vit_tiny", depth=2, img_size=(64, 48), ffn="ps", num_experts=2, part_ratio=0.5)
    assert m.depth == 2 and m.grid_size == (4, 3) and m.blocks[0].mlp.part_features == 96
    with pytest.raises(ValueError, match="part_features"):
        build_backbone("vit_tiny", depth=1, ffn="shared", part_features=8)
    with pytest.raises(ValueError, match="ffn"):
        build_backbone("vit_tiny", depth=1, ffn="moe")


# ---------------------------------------------------------------- convolutional stem (backbone.stem=conv)


def _receptive_centre(embed: torch.nn.Module, size: tuple[int, int], i: int, j: int) -> tuple[float, float]:
    """(x, y) centroid of the input pixels that token (i, j) of ``embed`` depends on, with every weight set to
    a positive constant (so the centroid is the geometric centre of the receptive field)."""
    embed = embed.eval()
    with torch.no_grad():
        for p in embed.parameters():
            p.fill_(0.01)
    x = torch.ones(1, 3, *size, requires_grad=True)
    embed(x)[0, :, i, j].sum().backward()
    g = x.grad.abs().sum(1)[0]
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return float((g * xs).sum() / g.sum()), float((g * ys).sum() / g.sum())


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_token_centres_are_where_pos_embed_at_puts_them(stem):
    bb = build_backbone("vit_tiny", img_size=(128, 96), stem=stem)
    assert bb.grid_size == (8, 6)
    assert bb(torch.randn(2, 3, 128, 96)).shape == (2, 192, 8, 6)
    i, j = 4, 3  # an interior token: its receptive field is not cut by the image border
    cx, cy = _receptive_centre(bb.patch_embed, (128, 96), i, j)
    offset = bb.patch_embed.centre_offset
    assert (cx, cy) == pytest.approx((j * 16 + offset, i * 16 + offset), abs=1e-3)
    # pos_embed_at reads the grid's embedding exactly at the token centres
    pts = torch.tensor([[[jj * 16 + offset, ii * 16 + offset] for ii in range(8) for jj in range(6)]])
    torch.testing.assert_close(
        bb.pos_embed_at(pts, (128, 96)), bb.grid_pos_embed((8, 6)), atol=1e-6, rtol=1e-5
    )


def test_conv_stem_layout_and_errors():
    bb = build_backbone("vit_tiny", img_size=(120, 90), stem="conv")
    assert bb.grid_size == (8, 6)  # ceil(120 / 16), ceil(90 / 16)
    assert bb(torch.randn(1, 3, 120, 90)).shape[-2:] == (8, 6)
    widths = [m.out_channels for m in bb.patch_embed.convs if isinstance(m, torch.nn.Conv2d)]
    assert widths == [24, 48, 96, 192]  # 4 stride-2 layers for stride 16, doubling up to the width
    assert bb.config["stem"] == "conv"
    assert (
        "stem" not in build_backbone("vit_tiny", img_size=(128, 96)).config
    )  # the official layout is unchanged
    with pytest.raises(ValueError, match="stem='conv'.*ratio=2"):
        build_backbone("vit_tiny", img_size=(128, 96), stem="conv", ratio=2)
    with pytest.raises(ValueError, match="unknown stem 'cnn'"):
        build_backbone("vit_tiny", img_size=(128, 96), stem="cnn")
