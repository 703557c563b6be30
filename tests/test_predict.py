"""``python -m multipose.predict`` on the tiny world: the results file matches validation's, --draw writes
images, images without boxes give empty results, unknown skeletons are a clear error, videos are read."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pytest
import torch

from conftest import compose
from multipose.evaluation.coco import evaluate_keypoints
from multipose.lit_module import PoseLitModule
from multipose.predict import main


def predict_main(argv: list[str]) -> dict[str, Path]:
    """Run the CLI; return {head: results file} from what it wrote into --out."""
    assert main(argv) == 0
    out = Path(argv[argv.index("--out") + 1])
    heads = {"coco": "syn_coco", "mpii": "syn_mpii"}
    return {heads[p.stem.split("_", 1)[1]]: p for p in sorted(out.glob("results_*.json"))}


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """A smoke-sized model (random weights, heads scaled so poses vary), its checkpoint and its validation."""
    tmp = tmp_path_factory.mktemp("predict")
    cfg = compose("train", ["+experiment=smoke", f"data.root={tiny_world}"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    from multipose.train import build_model_config

    torch.manual_seed(0)
    module = PoseLitModule(
        build_model_config(cfg, dm),
        evaluation=dict(cfg.evaluation),
        mix=dm.describe(),
    )
    for p in module.model.heads.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.05)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp / "val"),
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    ckpt = tmp / "model.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=True)
    return {
        "ckpt": ckpt,
        "metrics": dict(module.val_metrics),
        "val_dir": tmp / "val" / "results",
        "dm": dm,
        "world": tiny_world,
    }


def _results(path: Path) -> list[dict]:
    return sorted(json.loads(path.read_text()), key=lambda r: (r["image_id"], -r["score"]))


def test_predict_with_gt_boxes_reproduces_validation(trained, tmp_path):
    world = trained["world"]
    out = tmp_path / "out"
    written = predict_main(
        [
            str(trained["ckpt"]),
            str(world / "syn_coco/images/val"),
            "--out",
            str(out),
            "--skeleton",
            "coco",
            "--detections",
            str(world / "syn_coco/annotations/val.json"),
            "--draw",
            "--draw-thr",
            "0",
            "--no-progress",
        ]
    )
    assert list(written) == ["syn_coco"] and written["syn_coco"] == out / "results_coco.json"
    mine, val = _results(out / "results_coco.json"), _results(trained["val_dir"] / "results_syn_coco.json")
    assert len(mine) == len(val) > 0
    for a in mine:  # the same poses (persons of one image may tie in score, so match by position)
        same_image = [b for b in val if b["image_id"] == a["image_id"]]
        gap = min(np.abs(np.subtract(a["keypoints"], b["keypoints"])).max() for b in same_image)
        assert gap < 1e-3
    assert sorted(r["score"] for r in mine) == pytest.approx(sorted(r["score"] for r in val), abs=1e-6)
    # scored like validation scores it: the same AP
    dm = trained["dm"]
    from multipose.evaluation.evaluators import build_evaluator

    ev = build_evaluator("coco", "syn_coco", dm.val_instances("syn_coco"), dm.skeletons["syn_coco"])
    ap = evaluate_keypoints(ev.gt, out / "results_coco.json", ev.sigmas).metrics
    for key in ("AP", "AP50", "AR"):
        assert ap[key] == pytest.approx(trained["metrics"][f"val/syn_coco/{key}"], abs=1e-9), key
    # --draw: one image per input image, with left (blue) and right (orange) limbs drawn
    drawn = sorted((out / "draw" / "coco").glob("*.jpg"))
    assert len(drawn) == len(list((world / "syn_coco/images/val").glob("*.jpg")))
    import cv2

    img = cv2.cvtColor(cv2.imread(str(drawn[0])), cv2.COLOR_BGR2RGB).astype(int)
    from multipose.inference.draw import COLOURS

    for side in ("left", "right"):
        assert (np.abs(img - np.array(COLOURS[side])).sum(-1) < 60).sum() > 5, side


def test_image_without_detections_gives_an_empty_result(trained, tmp_path):
    world = trained["world"]
    image = sorted((world / "syn_coco/images/val").glob("*.jpg"))[0]
    dets = tmp_path / "dets.json"
    dets.write_text(
        json.dumps([{"image_id": 987654, "bbox": [0, 0, 10, 10], "score": 1.0, "category_id": 1}])
    )
    out = tmp_path / "out"
    written = predict_main(
        [
            str(trained["ckpt"]),
            str(image),
            "--out",
            str(out),
            "--detections",
            str(dets),
            "--draw",
            "--no-progress",
        ]
    )
    assert set(written) == {"syn_coco", "syn_mpii"}
    for path in written.values():
        assert json.loads(path.read_text()) == []
    assert (out / "draw" / "mpii" / (image.stem + ".jpg")).is_file()


def test_whole_image_boxes_and_unknown_skeleton(trained, tmp_path):
    world = trained["world"]
    image = sorted((world / "syn_mpii/images/val").glob("*.jpg"))[0]
    written = predict_main(
        [str(trained["ckpt"]), str(image), "--out", str(tmp_path), "--skeleton", "mpii", "--no-progress"]
    )
    results = json.loads(written["syn_mpii"].read_text())
    assert len(results) == 1 and len(results[0]["keypoints"]) == 16 * 3
    with pytest.raises(
        SystemExit, match=r"no head for skeleton 'crowdpose'; it has: coco \(head syn_coco\), mpii"
    ):
        predict_main([str(trained["ckpt"]), str(image), "--out", str(tmp_path), "--skeleton", "crowdpose"])


def test_video_input(trained, tmp_path):
    av = pytest.importorskip("av", reason="the video extra (PyAV) is not installed")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    out = tmp_path / "o"
    written = predict_main(
        [str(trained["ckpt"]), str(path), "--out", str(out), "--skeleton", "coco", "--draw", "--no-progress"]
    )
    results = json.loads(written["syn_coco"].read_text())
    assert sorted(r["image_id"] for r in results) == [0, 1, 2]  # one whole-frame box per frame
    assert sorted(p.name for p in (out / "draw" / "coco").iterdir()) == [
        f"frame_00000{i}.jpg" for i in range(3)
    ]
    assert not (out / "draw" / ".frames").exists()
