"""Parity with Hugging Face transformers' VitPose / VitPose+ (skipped without the optional ``hf`` extra).

Small random models (C=64, depth 2, 64x48 input) are built in transformers, saved with ``save_pretrained``
(``model.safetensors`` + ``config.json``), converted, and the heatmaps compared with transformers' own output.
LayerNorm eps is set to the official 1e-6 (transformers' default is 1e-12) so the comparison is exact.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from multipose.models.checkpoints import CheckpointError, convert_checkpoint  # noqa: E402
from multipose.models.loading import load_pose_model  # noqa: E402
from multipose.models.registry import build_backbone  # noqa: E402

C, DEPTH, NUM_HEADS, PART, EXPERTS = 64, 2, 4, 16, 6
IMG = (64, 48)


def hf_model(simple: bool, num_experts: int = 1, seed: int = 0):
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    bcfg = VitPoseBackboneConfig(
        image_size=list(IMG),
        patch_size=[16, 16],
        hidden_size=C,
        num_hidden_layers=DEPTH,
        num_attention_heads=NUM_HEADS,
        mlp_ratio=4,
        num_experts=num_experts,
        part_features=PART,
        layer_norm_eps=1e-6,
        out_indices=[DEPTH],
    )
    cfg = VitPoseConfig(backbone_config=bcfg, use_simple_decoder=simple, num_labels=17)
    torch.manual_seed(seed)
    model = VitPoseForPoseEstimation(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # perturb everything (LN/BN scales, running stats) so a wrong mapping shows
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g) * 0.05)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, *IMG, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("simple", [False, True])
def test_vitpose_matches_transformers(simple, images, tmp_path):
    hf = hf_model(simple)
    hf.save_pretrained(tmp_path)
    result = convert_checkpoint(tmp_path)
    assert result.format == "hf"
    assert result.model_config["backbone"]["overrides"]["num_heads"] == NUM_HEADS  # from config.json
    assert result.model_config["head"]["type"] == ("simple" if simple else "classic")
    model = load_pose_model(tmp_path)
    with torch.inference_mode():
        ref = hf(pixel_values=images).heatmaps
    out = model.predict_heatmaps(images, skeleton="coco")
    assert out.shape == ref.shape == (3, 17, IMG[0] // 4, IMG[1] // 4)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_vitpose_plus_matches_transformers_for_every_dataset_index(images, tmp_path):
    hf = hf_model(simple=False, num_experts=EXPERTS, seed=3)
    hf.save_pretrained(tmp_path)
    outs = []
    for t in range(EXPERTS):
        model = load_pose_model(tmp_path, hf_expert=t)  # expert t merged with HF's single head
        with torch.inference_mode():
            ref = hf(pixel_values=images, dataset_index=torch.full((3,), t)).heatmaps
        out = model.predict_heatmaps(images)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        outs.append(out)
    assert not torch.allclose(outs[0], outs[5], atol=1e-4)  # the experts really differ


def test_vitpose_plus_experts_kept_as_backbone_init(images, tmp_path):
    """All experts kept: the routed backbone + head reproduce HF with a mixed dataset_index batch."""
    hf = hf_model(simple=False, num_experts=EXPERTS, seed=4)
    # a bare state dict without config.json: the number of attention heads must be given
    from safetensors.torch import save_file

    path = tmp_path / "vitpose_plus.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="--num-heads"):
        convert_checkpoint(path)
    result = convert_checkpoint(path, num_heads=NUM_HEADS, hf_expert=None)
    assert result.model_config["backbone"]["num_experts"] == EXPERTS
    backbone = build_backbone(
        "vit_tiny",
        embed_dim=C,
        depth=DEPTH,
        num_heads=NUM_HEADS,
        img_size=IMG,
        ffn="ps",
        num_experts=EXPERTS,
        part_features=PART,
    ).eval()
    sd = {k[len("backbone.") :]: v for k, v in result.state_dict.items() if k.startswith("backbone.")}
    backbone.load_state_dict(sd, strict=True)
    from multipose.models.heads import ClassicHead

    head = ClassicHead(C, 17).eval()
    head.load_state_dict(
        {k[len("heads.coco.") :]: v for k, v in result.state_dict.items() if k.startswith("heads.coco.")},
        strict=True,
    )
    idx = torch.tensor([4, 0, 2])
    with torch.inference_mode():
        ref = hf(pixel_values=images, dataset_index=idx).heatmaps
        out = head(backbone(images, idx))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
