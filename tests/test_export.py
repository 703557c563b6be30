"""ONNX export of one head through its merged expert: dynamic batch, onnxruntime parity with PyTorch."""

from __future__ import annotations

import pytest
import torch

from multipose.export import image_like_batch
from multipose.export import main as export_main
from multipose.models.build import model_from_config
from multipose.models.checkpoints import save_multipose

CFG = {
    "backbone": {
        "name": "vit_tiny",
        "ffn": "ps",
        "img_size": [64, 48],
        "overrides": {"embed_dim": 32, "depth": 2, "num_heads": 2},
    },
    "head": {"type": "classic", "deconv_filters": [16, 16]},
    "heads": {
        "coco": {"skeleton": "coco", "num_keypoints": 17},
        "mpii": {"skeleton": "mpii", "num_keypoints": 16},
    },
}


def _checkpoint(tmp_path):
    """A two-head ViTPose++-style checkpoint whose experts differ and whose heatmaps are O(1) (the released
    init gives ~1e-6 heatmaps, against which a 1e-4 tolerance would prove nothing)."""
    torch.manual_seed(0)
    model = model_from_config(CFG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".experts." in name or name.startswith("heads."):
                p.normal_(0, 0.2)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_(0, 0.1)
    path = save_multipose(tmp_path / "pp.safetensors", CFG, model.state_dict())
    return path, model.eval()


def test_export_parity_with_onnxruntime(tmp_path, capsys):
    ort = pytest.importorskip(
        "onnxruntime", reason="optional extra 'onnx' missing: pip install 'multipose[onnx]'"
    )
    onnx = pytest.importorskip("onnx", reason="optional extra 'onnx' missing: pip install 'multipose[onnx]'")
    ckpt, model = _checkpoint(tmp_path)
    out = tmp_path / "export" / "mpii.onnx"
    assert export_main([str(ckpt), "--head", "mpii", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity     : OK" in printed and "image-like" in printed and "random" in printed

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x_random = torch.randn(4, 3, 64, 48, generator=torch.Generator().manual_seed(5))
    for x in (x_random, image_like_batch(7, (64, 48), seed=9)):  # batch sizes other than the export's 2
        (got,) = session.run(["heatmaps"], {"images": x.numpy()})
        # against the routed MoE model (sample -> expert of 'mpii'): merging + export together
        ref = model.predict_heatmaps(x, head="mpii")
        assert got.shape == (x.shape[0], 16, 16, 12)
        assert ref.abs().max() > 0.1  # non-trivial outputs
        assert (torch.from_numpy(got) - ref).abs().max() <= 1e-4
        other = model.predict_heatmaps(x, head="coco")[:, :16]  # the other expert/head would differ
        assert (torch.from_numpy(got) - other).abs().max() > 1e-2

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["multipose.head"] == "mpii" and meta["multipose.num_keypoints"] == "16"
    assert (
        meta["multipose.input_size_hw"] == "64,48" and len(meta["multipose.keypoint_names"].split(",")) == 16
    )
    graph_input = session.get_inputs()[0]
    assert graph_input.name == "images" and not isinstance(graph_input.shape[0], int)  # dynamic batch


def test_head_by_skeleton_name():
    from multipose.export import ExportError, pick_head

    cfg = dict(
        CFG,
        heads={
            "mine": {"skeleton": "coco", "num_keypoints": 17},
            "b": {"skeleton": "mpii", "num_keypoints": 16},
        },
    )
    model = model_from_config(cfg)
    assert pick_head(model, "coco", "x") == "mine" and pick_head(model, "b", "x") == "b"
    with pytest.raises(ExportError, match="no head 'aic'"):
        pick_head(model, "aic", "x")


def test_unknown_head_lists_heads_without_onnx(tmp_path, capsys):
    ckpt, _ = _checkpoint(tmp_path)
    assert export_main([str(ckpt), "--head", "aic", "--out", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "its heads are: coco (skeleton coco), mpii (skeleton mpii)" in err


def test_failed_parity_writes_nothing(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx", reason="optional extra 'onnx' missing: pip install 'multipose[onnx]'")
    import multipose.export as ex

    ckpt, _ = _checkpoint(tmp_path)
    monkeypatch.setattr(ex, "verify_onnx", lambda *a: [ex.ParityCheck("random N(0,1)", 3, 0.5, 1.0)])
    out = tmp_path / "bad.onnx"
    assert export_main([str(ckpt), "--head", "coco", "--out", str(out)]) == 2
    assert "differs from PyTorch by 0.5" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pp.safetensors"]
