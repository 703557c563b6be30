"""Checkpoint conversion: official ViTPose / ViTPose++ / MAE layouts -> multipose, safe loading, CLI.

Fixtures are built here from the documented official key list and shapes (small dims: C=64, depth 2, input
64x48 -> 4x3 tokens), with random values. The converted models are compared against an independent functional
forward written directly on the *official* state dict, so a wrong key mapping (q/k/v order, expert order,
swapped heads) changes the numbers and fails.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from multipose.convert import main as convert_main
from multipose.models.checkpoints import (
    CheckpointError,
    convert_checkpoint,
    load_backbone_init,
    read_checkpoint,
    save_multipose,
)
from multipose.models.loading import load_pose_model, load_weights_into
from multipose.models.registry import build_backbone

C, DEPTH, NUM_HEADS, PART = 64, 2, 4, 16
IMG = (64, 48)  # (H, W) -> token grid 4x3 with the official padding 2
GRID = (4, 3)
FILTERS = 32
PP_KS = [17, 14, 16, 17, 17, 133]  # ViTPose++ heads: coco, aic, mpii, ap10k, apt36k, wholebody


# ------------------------------------------------------------------------------------------------ fixtures


def _head(sd: dict, prefix: str, k: int, g: torch.Generator, simple: bool = False) -> None:
    if simple:
        sd[f"{prefix}.final_layer.weight"] = torch.randn(k, C, 3, 3, generator=g) * 0.05
        sd[f"{prefix}.final_layer.bias"] = torch.randn(k, generator=g) * 0.1
        return
    sd[f"{prefix}.deconv_layers.0.weight"] = torch.randn(C, FILTERS, 4, 4, generator=g) * 0.05
    sd[f"{prefix}.deconv_layers.3.weight"] = torch.randn(FILTERS, FILTERS, 4, 4, generator=g) * 0.05
    for i in (1, 4):
        sd[f"{prefix}.deconv_layers.{i}.weight"] = torch.rand(FILTERS, generator=g) + 0.5
        sd[f"{prefix}.deconv_layers.{i}.bias"] = torch.randn(FILTERS, generator=g) * 0.1
        sd[f"{prefix}.deconv_layers.{i}.running_mean"] = torch.randn(FILTERS, generator=g) * 0.1
        sd[f"{prefix}.deconv_layers.{i}.running_var"] = torch.rand(FILTERS, generator=g) + 0.5
        sd[f"{prefix}.deconv_layers.{i}.num_batches_tracked"] = torch.tensor(100)
    sd[f"{prefix}.final_layer.weight"] = torch.randn(k, FILTERS, 1, 1, generator=g) * 0.1
    sd[f"{prefix}.final_layer.bias"] = torch.randn(k, generator=g) * 0.1


def official_state(
    head_ks: list[int], moe: bool = False, simple: bool = False, seed: int = 0, num_experts: int = 6
) -> dict[str, torch.Tensor]:
    """An official ViTPose(++) full-model state dict (vitpose.md §1.4 key list) with random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=0.05):
        return torch.randn(*shape, generator=g) * s

    n_tok = GRID[0] * GRID[1]
    sd = {
        "backbone.cls_token": r(1, 1, C),
        "backbone.pos_embed": r(1, 1 + n_tok, C, s=0.2),
        "backbone.patch_embed.proj.weight": r(C, 3, 16, 16, s=0.02),
        "backbone.patch_embed.proj.bias": r(C),
    }
    fc2_rows = C - PART if moe else C
    for i in range(DEPTH):
        b = f"backbone.blocks.{i}."
        for n in ("norm1", "norm2"):
            sd[b + n + ".weight"] = 1 + r(C, s=0.1)
            sd[b + n + ".bias"] = r(C)
        sd[b + "attn.qkv.weight"] = r(3 * C, C, s=0.1)
        sd[b + "attn.qkv.bias"] = r(3 * C)
        sd[b + "attn.proj.weight"] = r(C, C)
        sd[b + "attn.proj.bias"] = r(C)
        sd[b + "mlp.fc1.weight"] = r(4 * C, C, s=0.1)
        sd[b + "mlp.fc1.bias"] = r(4 * C)
        sd[b + "mlp.fc2.weight"] = r(fc2_rows, 4 * C, s=0.1)
        sd[b + "mlp.fc2.bias"] = r(fc2_rows)
        if moe:
            for k in range(num_experts):
                sd[b + f"mlp.experts.{k}.weight"] = r(PART, 4 * C, s=0.1)
                sd[b + f"mlp.experts.{k}.bias"] = r(PART)
    sd["backbone.last_norm.weight"] = 1 + r(C, s=0.1)
    sd["backbone.last_norm.bias"] = r(C)
    _head(sd, "keypoint_head", head_ks[0], g, simple)
    for j, k in enumerate(head_ks[1:]):
        _head(sd, f"associate_keypoint_heads.{j}", k, g, simple)
    return sd


def save_mmcv(path: Path, sd: dict) -> Path:
    """mmcv-style file: ``meta`` + ``state_dict`` (meta with a numpy scalar, as mmcv's hook_msgs has)."""
    meta = {"epoch": 210, "mmcv_version": "1.3.9", "hook_msgs": {"best_score": np.float64(0.77)}}
    torch.save({"meta": meta, "state_dict": sd}, path)
    return path


def reference_heatmaps(
    sd: dict, x: torch.Tensor, head: str, task: int | None, simple: bool = False
) -> torch.Tensor:
    """Official ViTPose(++) forward (vitpose.md §1.1, §2.1, §3) written on the official state dict."""
    B = x.shape[0]
    y = F.conv2d(
        x, sd["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.proj.bias"], stride=16, padding=2
    )
    h, w = y.shape[-2:]
    t = y.flatten(2).transpose(1, 2)
    pos = sd["backbone.pos_embed"]
    t = t + pos[:, 1:] + pos[:, :1]
    hd = C // NUM_HEADS
    for i in range(DEPTH):
        b = f"backbone.blocks.{i}."
        n = F.layer_norm(t, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-6)
        qkv = F.linear(n, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, -1, 3, NUM_HEADS, hd).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(B, -1, C)
        t = t + F.linear(o, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        n = F.layer_norm(t, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-6)
        hid = F.gelu(F.linear(n, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        out = F.linear(hid, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        if task is not None:  # shared channels first, expert channels last
            e = F.linear(hid, sd[b + f"mlp.experts.{task}.weight"], sd[b + f"mlp.experts.{task}.bias"])
            out = torch.cat([out, e], dim=-1)
        t = t + out
    t = F.layer_norm(t, (C,), sd["backbone.last_norm.weight"], sd["backbone.last_norm.bias"], 1e-6)
    f = t.transpose(1, 2).reshape(B, C, h, w)
    if simple:
        f = F.interpolate(F.relu(f), scale_factor=4, mode="bilinear", align_corners=False)
        return F.conv2d(f, sd[f"{head}.final_layer.weight"], sd[f"{head}.final_layer.bias"], padding=1)
    for i in (0, 3):
        f = F.conv_transpose2d(f, sd[f"{head}.deconv_layers.{i}.weight"], stride=2, padding=1)
        bn = f"{head}.deconv_layers.{i + 1}."
        f = F.batch_norm(
            f,
            sd[bn + "running_mean"],
            sd[bn + "running_var"],
            sd[bn + "weight"],
            sd[bn + "bias"],
            training=False,
            eps=1e-5,
        )
        f = F.relu(f)
    return F.conv2d(f, sd[f"{head}.final_layer.weight"], sd[f"{head}.final_layer.bias"])


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, *IMG, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def vitpose_pp(tmp_path_factory) -> tuple[Path, dict]:
    sd = official_state(PP_KS, moe=True)
    path = save_mmcv(tmp_path_factory.mktemp("ckpt") / "vitpose+_tiny.pth", sd)
    return path, sd


# ------------------------------------------------------------------------------------------------ ViTPose++


def test_vitpose_pp_converts_with_all_heads_and_matches_official_forward(vitpose_pp, images):
    path, sd = vitpose_pp
    result = convert_checkpoint(path, num_heads=NUM_HEADS)
    assert result.format == "vitpose++"
    cfg = result.model_config
    assert list(cfg["heads"]) == ["coco", "aic", "mpii", "ap10k", "apt36k", "wholebody"]
    assert [h["skeleton"] for h in cfg["heads"].values()] == [
        "coco",
        "aic",
        "mpii",
        "ap10k",
        "ap10k",
        "coco_wholebody",
    ]
    assert [h["num_keypoints"] for h in cfg["heads"].values()] == PP_KS
    bb = cfg["backbone"]
    assert (bb["ffn"], bb["num_experts"], bb["part_features"], bb["img_size"]) == ("ps", 6, PART, list(IMG))
    assert result.dropped == ["backbone.cls_token"]

    model = load_pose_model(path, num_heads=NUM_HEADS)
    assert not model.training
    # strict: every model key came from the file and every file key (except cls_token) went into the model
    expected = {k for k in sd if k != "backbone.cls_token"}
    assert len(model.state_dict()) == len(expected)
    torch.testing.assert_close(
        model.heads["mpii"].final_layer.weight, sd["associate_keypoint_heads.1.final_layer.weight"]
    )

    for t, (name, head_key) in enumerate(
        zip(cfg["heads"], ["keypoint_head"] + [f"associate_keypoint_heads.{j}" for j in range(5)])
    ):
        skeleton = cfg["heads"][name]["skeleton"]
        kwargs = {"head": name} if skeleton == "ap10k" else {"skeleton": skeleton}  # two heads predict ap10k
        out = model.predict_heatmaps(images, **kwargs)
        assert out.shape == (2, PP_KS[t], IMG[0] // 4, IMG[1] // 4)
        ref = reference_heatmaps(sd, images, head_key, task=t)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_merged_model_equals_moe_output(vitpose_pp, images, tmp_path, capsys):
    path, _ = vitpose_pp
    model = load_pose_model(path, num_heads=NUM_HEADS)
    for name in model.dataset_names:
        merged = model.merge_experts(name).eval()
        moe = model.predict_heatmaps(images, head=name)
        torch.testing.assert_close(merged.predict_heatmaps(images), moe, atol=1e-5, rtol=1e-5)
    # the CLI writes the merged single-task model (dense fc2 = shared rows + expert rows)
    dst = tmp_path / "aic.safetensors"
    assert convert_main([str(path), str(dst), "--num-heads", str(NUM_HEADS), "--merge", "aic"]) == 0
    dense = load_pose_model(dst)
    assert dense.backbone.ffn == "shared" and list(dense.heads) == ["aic"]
    assert dense.backbone.blocks[0].mlp.fc2.weight.shape == (C, 4 * C)
    torch.testing.assert_close(
        dense.predict_heatmaps(images), model.predict_heatmaps(images, head="aic"), atol=1e-5, rtol=1e-5
    )


def test_cli_converts_and_prints_summary(vitpose_pp, tmp_path, capsys, images):
    path, sd = vitpose_pp
    for dst in (tmp_path / "pp.safetensors", tmp_path / "pp.pt"):
        assert convert_main([str(path), str(dst), "--num-heads", str(NUM_HEADS)]) == 0
        out = capsys.readouterr().out
        assert "vitpose++" in out and "backbone.cls_token" in out and "wholebody" in out
        model = load_pose_model(dst)
        ref = reference_heatmaps(sd, images, "associate_keypoint_heads.0", task=1)
        torch.testing.assert_close(model.predict_heatmaps(images, skeleton="aic"), ref, atol=1e-4, rtol=1e-4)
    # the torch file is plain data: it loads with weights_only=True
    obj = torch.load(tmp_path / "pp.pt", weights_only=True)
    assert obj["model_config"]["heads"]["aic"] == {"skeleton": "aic", "num_keypoints": 14}


def test_split_per_task_file_drops_dead_experts(images, tmp_path):
    # tools/model_split.py output: fc2 already merged (C rows) but experts left in the file
    sd = official_state([14], moe=False, seed=3)
    for i in range(DEPTH):
        for k in range(6):
            sd[f"backbone.blocks.{i}.mlp.experts.{k}.weight"] = torch.randn(PART, 4 * C)
            sd[f"backbone.blocks.{i}.mlp.experts.{k}.bias"] = torch.randn(PART)
    path = save_mmcv(tmp_path / "aic.pth", sd)
    result = convert_checkpoint(path, num_heads=NUM_HEADS)
    assert result.format == "vitpose" and list(result.model_config["heads"]) == ["aic"]
    assert sum(".mlp.experts." in k for k in result.dropped) == DEPTH * 6 * 2
    model = load_pose_model(path, num_heads=NUM_HEADS)
    torch.testing.assert_close(
        model.predict_heatmaps(images),
        reference_heatmaps(sd, images, "keypoint_head", None),
        atol=1e-4,
        rtol=1e-4,
    )


# ----------------------------------------------------------------------------------------- ViTPose classic


@pytest.mark.parametrize("simple", [False, True])
def test_official_single_task(simple, images, tmp_path):
    sd = official_state([17], simple=simple, seed=5)
    path = save_mmcv(tmp_path / "vitpose.pth", sd)
    result = convert_checkpoint(path, num_heads=NUM_HEADS)
    assert result.format == "vitpose"
    assert result.model_config["head"]["type"] == ("simple" if simple else "classic")
    assert result.model_config["heads"] == {"coco": {"skeleton": "coco", "num_keypoints": 17}}
    model = load_pose_model(path, num_heads=NUM_HEADS)
    out = model.predict_heatmaps(images, skeleton="coco")
    torch.testing.assert_close(
        out, reference_heatmaps(sd, images, "keypoint_head", None, simple), atol=1e-4, rtol=1e-4
    )


def test_non_moe_multitask_heads_named_by_keypoint_count(images, tmp_path):
    sd = official_state([17, 16, 14], seed=7)  # COCO + MPII + AIC in an unusual order
    path = save_mmcv(tmp_path / "vitpose_base_coco_aic_mpii.pth", sd)
    model = load_pose_model(path, num_heads=NUM_HEADS)
    assert model.dataset_names == ["coco", "mpii", "aic"]
    torch.testing.assert_close(
        model.predict_heatmaps(images, skeleton="aic"),
        reference_heatmaps(sd, images, "associate_keypoint_heads.1", None),
        atol=1e-4,
        rtol=1e-4,
    )
    # two 14-keypoint heads (AIC + CrowdPose, the "*" checkpoints) are ambiguous without --head-names
    sd2 = official_state([17, 14, 16, 14], seed=8)
    path2 = save_mmcv(tmp_path / "star.pth", sd2)
    with pytest.raises(CheckpointError, match="head-names"):
        convert_checkpoint(path2, num_heads=NUM_HEADS)
    named = convert_checkpoint(path2, num_heads=NUM_HEADS, head_names=["coco", "aic", "mpii", "crowdpose"])
    assert list(named.model_config["heads"]) == ["coco", "aic", "mpii", "crowdpose"]
    assert named.model_config["heads"]["crowdpose"]["skeleton"] == "crowdpose"


# ---------------------------------------------------------------------------------------------------- MAE


def mae_state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {
        k[len("backbone.") :]: v
        for k, v in official_state([17], seed=seed).items()
        if k.startswith("backbone.")
    }
    sd = {k: v for k, v in sd.items() if not k.startswith("last_norm")}
    sd["pos_embed"] = torch.randn(1, 197, C, generator=g)
    sd["norm.weight"], sd["norm.bias"] = torch.ones(C), torch.zeros(C)
    sd["mask_token"] = torch.zeros(1, 1, C)
    sd["decoder_embed.weight"] = torch.randn(32, C, generator=g)
    sd["decoder_blocks.0.attn.qkv.weight"] = torch.randn(96, 32, generator=g)
    sd["decoder_pred.weight"] = torch.randn(768, 32, generator=g)
    return sd


def test_mae_init_resizes_pos_embed_and_copies_fc2_tail_into_experts(tmp_path, capsys):
    src = mae_state()
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": src}, path)
    backbone = build_backbone(
        "vit_tiny",
        embed_dim=C,
        depth=DEPTH,
        num_heads=NUM_HEADS,
        img_size=IMG,
        ffn="ps",
        num_experts=6,
        part_features=PART,
    )
    last_norm_before = backbone.last_norm.weight.detach().clone()
    report = load_backbone_init(backbone, path)
    printed = capsys.readouterr().out
    assert "decoder_blocks" in printed and "mask_token" in printed

    pos = backbone.pos_embed.detach()
    assert pos.shape == (1, 1 + GRID[0] * GRID[1], C)
    torch.testing.assert_close(pos[:, :1], src["pos_embed"][:, :1])  # cls slot kept
    grid = src["pos_embed"][:, 1:].reshape(1, 14, 14, C).permute(0, 3, 1, 2)
    expect = (
        F.interpolate(grid, size=GRID, mode="bicubic", align_corners=False)
        .permute(0, 2, 3, 1)
        .reshape(1, -1, C)
    )
    torch.testing.assert_close(pos[:, 1:], expect)
    for i in range(DEPTH):
        mlp = backbone.blocks[i].mlp
        fc2_w, fc2_b = src[f"blocks.{i}.mlp.fc2.weight"], src[f"blocks.{i}.mlp.fc2.bias"]
        torch.testing.assert_close(mlp.fc2.weight, fc2_w[: C - PART])
        torch.testing.assert_close(mlp.fc2.bias, fc2_b[: C - PART])
        for expert in mlp.experts:
            torch.testing.assert_close(expert.weight, fc2_w[C - PART :])
            torch.testing.assert_close(expert.bias, fc2_b[C - PART :])
        torch.testing.assert_close(backbone.blocks[i].attn.qkv.weight, src[f"blocks.{i}.attn.qkv.weight"])
    # MAE's norm does not become last_norm (official loader): reported missing, left at init
    assert "last_norm.weight" in report.missing and not report.unexpected and not report.mismatched
    torch.testing.assert_close(backbone.last_norm.weight, last_norm_before)
    assert {"norm.weight", "mask_token", "decoder_pred.weight", "cls_token"} <= set(report.dropped)


def test_backbone_init_from_official_checkpoint_resizes_to_new_input(tmp_path):
    sd = official_state([17], seed=11)
    path = save_mmcv(tmp_path / "vitpose.pth", sd)
    backbone = build_backbone("vit_tiny", embed_dim=C, depth=DEPTH, num_heads=NUM_HEADS, img_size=(128, 96))
    report = load_backbone_init(backbone, path, verbose=False)
    assert backbone.pos_embed.shape == (1, 1 + 8 * 6, C)
    assert not report.missing and not report.mismatched
    torch.testing.assert_close(backbone.last_norm.weight, sd["backbone.last_norm.weight"])
    assert any("pos_embed resized" in n for n in report.notes)


def test_cli_mae_writes_backbone_only_file(tmp_path, capsys):
    path = tmp_path / "mae.pth"
    torch.save({"model": mae_state(2)}, path)
    dst = tmp_path / "mae_ps.pt"
    rc = convert_main(
        [
            str(path),
            str(dst),
            "--format",
            "mae",
            "--img-size",
            *map(str, IMG),
            "--num-heads",
            str(NUM_HEADS),
            "--ffn",
            "ps",
            "--num-experts",
            "3",
            "--part-features",
            str(PART),
        ]
    )
    assert rc == 0
    assert "decoder_" in capsys.readouterr().out
    obj = read_checkpoint(dst)
    assert obj["state_dict"]["backbone.pos_embed"].shape == (1, 13, C)
    assert obj["state_dict"]["backbone.blocks.1.mlp.experts.2.weight"].shape == (PART, 4 * C)
    with pytest.raises(CheckpointError, match="no heads"):
        load_pose_model(dst)
    # and the file itself is a valid backbone.init source
    backbone = build_backbone(
        "vit_tiny",
        embed_dim=C,
        depth=DEPTH,
        num_heads=NUM_HEADS,
        img_size=IMG,
        ffn="ps",
        num_experts=3,
        part_features=PART,
    )
    report = load_backbone_init(backbone, dst, verbose=False)
    assert report.missing == ["last_norm.bias", "last_norm.weight"]


# ------------------------------------------------------------------------------------ Lightning / warm start


def test_lightning_checkpoint_and_warm_start(vitpose_pp, tmp_path, images):
    path, _ = vitpose_pp
    result = convert_checkpoint(path, num_heads=NUM_HEADS)
    ckpt = {
        "pytorch-lightning_version": "2.4.0",
        "epoch": 1,
        "hyper_parameters": {"model_config": result.model_config, "optim": {"lr": 1e-3}},
        "state_dict": {
            **{f"model.{k}": v for k, v in result.state_dict.items()},
            "loss_fn.scale": torch.ones(1),
        },
        "optimizer_states": [],
    }
    lpath = tmp_path / "last.ckpt"
    torch.save(ckpt, lpath)
    model = load_pose_model(lpath)
    ref = load_pose_model(path, num_heads=NUM_HEADS)
    torch.testing.assert_close(
        model.predict_heatmaps(images, skeleton="mpii"), ref.predict_heatmaps(images, skeleton="mpii")
    )
    # warm start of a model whose AIC head has another K: that head is skipped and reported, the rest loaded
    cfg = dict(result.model_config, heads=dict(result.model_config["heads"]))
    cfg["heads"]["aic"] = {"skeleton": "crowdpose", "num_keypoints": 14}
    cfg["heads"]["mpii"] = {"skeleton": "onehand10k", "num_keypoints": 21}
    from multipose.models.build import model_from_config

    target = model_from_config(cfg)
    report = load_weights_into(target, lpath, verbose=False)
    assert [m.split(":")[0] for m in report.mismatched] == [
        "heads.mpii.final_layer.weight",
        "heads.mpii.final_layer.bias",
    ]
    assert report.dropped == ["loss_fn.scale"]  # training-only keys are reported, not silently lost
    torch.testing.assert_close(target.heads["aic"].final_layer.weight, ref.heads["aic"].final_layer.weight)


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_layout_names_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}}, path)
    with pytest.raises(CheckpointError, match=r"resnet\.pth.*unknown checkpoint layout.*conv1\.weight"):
        convert_checkpoint(path)
    assert convert_main([str(path), str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists()


def test_bad_keys_and_shapes_are_named(tmp_path):
    sd = official_state(PP_KS, moe=True)
    sd["backbone.blocks.0.attn.relative_position_bias_table"] = torch.zeros(3, 4)
    with pytest.raises(CheckpointError, match="relative_position_bias_table"):
        convert_checkpoint(save_mmcv(tmp_path / "a.pth", sd), num_heads=NUM_HEADS)
    sd = official_state(PP_KS, moe=True)
    sd["backbone.blocks.1.mlp.experts.4.weight"] = torch.zeros(PART + 1, 4 * C)
    with pytest.raises(CheckpointError, match=r"b\.pth.*blocks\.1\.mlp\.experts\.4\.weight"):
        convert_checkpoint(save_mmcv(tmp_path / "b.pth", sd), num_heads=NUM_HEADS)
    sd = official_state([17, 14, 16, 17, 17, 17], moe=True)  # last head is not WholeBody's 133
    with pytest.raises(CheckpointError, match=r"associate_keypoint_heads\.4\.final_layer"):
        convert_checkpoint(save_mmcv(tmp_path / "c.pth", sd), num_heads=NUM_HEADS)
    # forcing a layout that does not fit names the offending keys
    sd = official_state([17], seed=1)
    with pytest.raises(CheckpointError, match="Hugging Face VitPose layout.*backbone"):
        convert_checkpoint(save_mmcv(tmp_path / "d.pth", sd), "hf")
    with pytest.raises(CheckpointError, match="vitpose\\+\\+ was asked for"):
        convert_checkpoint(tmp_path / "d.pth", "vitpose++", num_heads=NUM_HEADS)
    # num_heads is not in the weights: a non-released width needs it
    with pytest.raises(CheckpointError, match="--num-heads"):
        convert_checkpoint(tmp_path / "d.pth")


class _Payload:
    """Unpickling this would create a marker file: the loader must refuse it before it runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    sd = official_state([17], seed=2)
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"hook": _Payload(str(marker))}, "state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refusing to load.*getattr"):
        load_pose_model(path, num_heads=NUM_HEADS)
    assert not marker.exists()
    # numpy scalars in mmcv meta are plain data and are accepted (see save_mmcv)
    assert read_checkpoint(save_mmcv(tmp_path / "ok.pth", sd))["meta"]["epoch"] == 210


def test_save_multipose_round_trip_is_plain_data(vitpose_pp, tmp_path):
    path, _ = vitpose_pp
    result = convert_checkpoint(path, num_heads=NUM_HEADS)
    st = save_multipose(tmp_path / "m.safetensors", result.model_config, result.state_dict)
    obj = read_checkpoint(st)
    assert obj["model_config"] == result.model_config
    assert set(obj["state_dict"]) == set(result.state_dict)
    torch.testing.assert_close(
        obj["state_dict"]["heads.wholebody.final_layer.bias"],
        result.state_dict["heads.wholebody.final_layer.bias"],
    )
    assert math.isclose(
        float(obj["state_dict"]["backbone.pos_embed"].sum()),
        float(result.state_dict["backbone.pos_embed"].sum()),
    )
