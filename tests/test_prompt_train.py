"""+prompt=extpose end to end: config composition, exact resume, prompted validation metrics, predict --prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose
from multipose.train import train
from train_helpers import run_config, stop_after_overrides

SMOKE = ["+experiment=smoke", "trainer.enable_model_summary=false", "+prompt=extpose"]
CKPT = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]
EXACT = ["data.prompt.noise=0", "data.prompt.drop=0", "data.prompt.swap=0"]


def _last(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


def test_prompt_config_composes_with_the_real_mix():
    from multipose.config_validation import validate_train_config

    cfg = compose(
        "train", ["+experiment=full_mix", "+prompt=extpose", "trainer.devices=1", "trainer.accelerator=cpu"]
    )
    assert cfg.data.prompt.prompt_mask_prob == 0.5
    assert list(cfg.bridge.prompt.variants) == ["prompt", "prompt_pose_only", "prompt_input"]
    assert cfg.data._target_.endswith("MultiPoseDataModule") and len(cfg.data.datasets) >= 6
    validate_train_config(cfg, check_files=False)  # bridges and loss.prompt agree


@pytest.mark.slow
def test_prompted_training_resumes_exactly(tmp_path, tiny_world):
    """Prompt draws (source, corruption, modality masks) are part of the resumable data stream."""
    quiet = ["+trainer.limit_val_batches=0", "validate=false"]
    full = run_config(tmp_path / "full", tiny_world, [*SMOKE, *CKPT, *quiet, "trainer.max_epochs=2"])
    train(full)
    first = run_config(
        tmp_path / "a",
        tiny_world,
        [
            *SMOKE,
            *CKPT,
            *quiet,
            "trainer.max_epochs=2",
            *stop_after_overrides(1),
        ],
    )
    train(first)
    resume = run_config(
        tmp_path / "b",
        tiny_world,
        [*SMOKE, *CKPT, *quiet, "trainer.max_epochs=2", f"ckpt_path={_last(tmp_path / 'a' / 'run')}"],
    )
    train(resume)
    a = torch.load(_last(tmp_path / "full" / "run"), map_location="cpu", weights_only=True)
    b = torch.load(_last(tmp_path / "b" / "run"), map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    assert any(k.startswith("model.prompt.") for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.fixture(scope="module")
def prompted_run(tiny_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prompted")
    cfg = run_config(tmp, tiny_world, [*SMOKE, *EXACT, "trainer.max_epochs=1"])
    metrics = train(cfg)
    return {"metrics": metrics, "ckpt": _last(tmp / "run"), "world": tiny_world}


def test_prompted_validation_scores_sit_next_to_the_image_only_ones(prompted_run):
    m = prompted_run["metrics"]
    for key in (
        "val/syn_coco/AP",
        "val/syn_coco/prompt/AP",
        "val/syn_coco/prompt_pose_only/AP",
        "val/syn_mpii/prompt/PCKh@0.5",
        "val/syn_coco/cross/syn_mpii/prompt/AP",
        "val/syn_mpii/cross/syn_coco/prompt/AP",
    ):
        assert key in m, key
    # an uncorrupted ground-truth prompt, scored as a prediction, is perfect
    assert m["val/syn_coco/prompt_input/AP"] == pytest.approx(1.0)
    assert m["val/syn_mpii/prompt_input/PCKh@0.5"] == pytest.approx(1.0)


def test_predict_with_prompt_gives_every_head(prompted_run, tmp_path):
    from multipose.predict import main

    world = prompted_run["world"]
    ann = json.loads((world / "syn_coco/annotations/val.json").read_text())
    rows = [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "keypoints": a["keypoints"],
            "score": 1.0,
            "bbox": a["bbox"],
        }
        for a in ann["annotations"]
        if not a.get("iscrowd") and max(a["keypoints"][2::3]) > 0
    ]
    prompt = tmp_path / "prompt.json"
    prompt.write_text(json.dumps(rows))
    out = tmp_path / "out"
    args = [str(prompted_run["ckpt"]), str(world / "syn_coco/images/val"), "--out", str(out), "--no-progress"]
    assert main([*args, "--prompt", str(prompt), "--prompt-skeleton", "coco"]) == 0
    coco = json.loads((out / "results_coco.json").read_text())
    mpii = json.loads((out / "results_mpii.json").read_text())
    assert len(coco) == len(mpii) > 0  # one pose per prompt, for each head
    assert len(mpii[0]["keypoints"]) == 16 * 3
    assert main([*args[:3], str(tmp_path / "plain"), "--no-progress", "--detections", str(prompt)]) == 0
    plain = json.loads((tmp_path / "plain" / "results_coco.json").read_text())
    gap = max(np.abs(np.subtract(a["keypoints"], b["keypoints"])).max() for a, b in zip(coco, plain))
    assert gap > 1e-3  # the prompt changed the prediction


def test_predictor_with_a_fully_masked_prompt_equals_image_only(prompted_run):
    from multipose.inference import Predictor
    from multipose.predict import load_for_inference

    model, spec, _ = load_for_inference(prompted_run["ckpt"])
    predictor = Predictor(model, spec, flip_test=True)
    images = torch.randn(2, 3, *spec.input_size)
    p = 17
    masked = {
        "prompt_keypoints": torch.rand(2, p, 3) * 40,
        "prompt_tags": torch.zeros(2, p, dtype=torch.long),
        "prompt_skeletons": torch.zeros(2, p, dtype=torch.long),
        "prompt_valid": torch.zeros(2, p, dtype=torch.bool),
    }
    a = predictor.heatmaps(images, spec.names)
    b = predictor.heatmaps(images, spec.names, prompt=masked)
    for h in spec.names:
        assert (a[h] - b[h]).abs().max() <= 1e-6
