"""Hugging Face VitPose key layout -> multipose without transformers installed: a multipose model's weights are
renamed to HF's names here (the inverse of the converter, written independently), converted back, and must give
the same heatmaps. tests/test_hf_parity.py checks against transformers itself when it is installed."""

from __future__ import annotations

import json
import re

import torch

from multipose.models.build import model_from_config
from multipose.models.checkpoints import convert_checkpoint
from multipose.models.loading import load_pose_model

CFG = {
    "backbone": {
        "name": "vit_tiny",
        "img_size": [64, 48],
        "overrides": {"embed_dim": 32, "depth": 2, "num_heads": 2},
    },
    "head": {"type": "classic", "deconv_filters": [16, 16], "final_kernel": 1},
    "heads": {"coco": {"skeleton": "coco", "num_keypoints": 17}},
}
HEAD_NAMES = {
    "deconv_layers.0": "deconv1",
    "deconv_layers.1": "batchnorm1",
    "deconv_layers.3": "deconv2",
    "deconv_layers.4": "batchnorm2",
    "final_layer": "conv",
}
BLOCK_NAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, v in sd.items():
        if key.startswith("heads.coco."):
            module, param = key[len("heads.coco.") :].rsplit(".", 1)
            out[f"head.{HEAD_NAMES[module]}.{param}"] = v
            continue
        k = key[len("backbone.") :]
        if k == "pos_embed":
            out["backbone.embeddings.position_embeddings"] = v
        elif k.startswith("patch_embed.proj."):
            out["backbone.embeddings.patch_embeddings.projection." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("last_norm."):
            out["backbone.layernorm." + k.rsplit(".", 1)[1]] = v
        else:
            i, module, param = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", k).groups()
            layer = f"backbone.encoder.layer.{i}"
            if module == "attn.qkv":
                for name, part in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                    out[f"{layer}.attention.attention.{name}.{param}"] = part.clone()
            else:
                out[f"{layer}.{BLOCK_NAMES[module]}.{param}"] = v
    return out


def test_hf_layout_round_trip(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = model_from_config(CFG).eval()
    with torch.no_grad():
        for p in model.heads.parameters():
            p.normal_(0, 0.2)
    hf_dir = tmp_path / "vitpose-hf"
    hf_dir.mkdir()
    # without BatchNorm's num_batches_tracked counters (not weights; some exporters drop them)
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file({k: v.contiguous() for k, v in to_hf(sd).items()}, str(hf_dir / "model.safetensors"))
    (hf_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "vitpose",
                "backbone_config": {
                    "num_attention_heads": 2,
                    "image_size": [64, 48],
                    "layer_norm_eps": 1e-6,
                    "num_hidden_layers": 2,
                    "out_indices": [2],
                },
            }
        )
    )
    result = convert_checkpoint(hf_dir)  # a directory: its weights file and config.json
    assert result.format == "hf" and result.model_config["heads"] == CFG["heads"]
    assert result.model_config["backbone"]["overrides"]["num_heads"] == 2  # from config.json
    x = torch.randn(3, 3, 64, 48)
    loaded = load_pose_model(hf_dir)
    torch.testing.assert_close(
        loaded.predict_heatmaps(x, head="coco"), model.predict_heatmaps(x, head="coco")
    )
