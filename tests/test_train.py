"""End-to-end training and evaluation on the tiny synthetic world (CPU): fast_dev_run, metrics.json, eval from a
checkpoint, resume, W&B offline, multirun, DDP, and the errors users hit first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from multipose.eval import evaluate
from multipose.train import train
from train_helpers import run_config, run_train_cli, stop_after_overrides

SMOKE = ["+experiment=smoke", "trainer.enable_model_summary=false"]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_fast_dev_run_trains_and_writes_metrics(tmp_path, tiny_world):
    cfg = run_config(tmp_path, tiny_world, [*SMOKE, "+trainer.fast_dev_run=true"])
    metrics = train(cfg)
    written = _metrics(tmp_path / "run")
    assert written == pytest.approx(metrics, nan_ok=True)
    for key in ("val/syn_coco/AP", "val/syn_mpii/PCKh@0.5", "val/score"):
        assert key in written
    assert all(k.count("/") >= 2 for k in written if k.startswith("val/syn"))
    assert any(k.startswith("val/syn_coco/cross/syn_mpii/") for k in written)  # cross-skeleton scores
    assert "train/loss" in written and written["train/loss"] > 0


def _last_ckpt(run_dir: Path) -> Path:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), list(run_dir.rglob("*"))
    return ckpt


CKPT = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]


def test_eval_from_checkpoint_reproduces_training_metrics(tmp_path, tiny_world):
    train_cfg = run_config(tmp_path / "t", tiny_world, [*SMOKE, *CKPT, "trainer.max_epochs=1"])
    train(train_cfg)
    trained = _metrics(tmp_path / "t" / "run")
    eval_cfg = run_config(
        tmp_path / "e",
        tiny_world,
        # the smoke run trained and validated in fp32; eval's CPU default is bf16-mixed where bf16 is native
        # (eval run=<dir> takes the run's precision)
        [
            "data=synthetic_small",
            "trainer.precision=32-true",
            f"ckpt_path={_last_ckpt(tmp_path / 't' / 'run')}",
        ],
        "eval",
    )
    evaluated = evaluate(eval_cfg)
    val_keys = [k for k in trained if k.startswith("val/")]
    assert val_keys
    for key in val_keys:
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6, nan_ok=True), key
    assert _metrics(tmp_path / "e" / "run") == pytest.approx(evaluated, nan_ok=True)
    # the results file of the COCO-style set is a standard COCO keypoint results list
    results = json.loads((tmp_path / "e" / "run" / "results" / "results_syn_coco.json").read_text())
    assert results and {"image_id", "category_id", "keypoints", "score"} <= set(results[0])
    assert len(results[0]["keypoints"]) == 17 * 3


def test_resume_continues_steps_and_data_sequence(tmp_path, tiny_world):
    """Two epochs in one go, and a run interrupted after one epoch then resumed from last.ckpt, end with the
    same step count and bit-identical weights: optimiser state, LR schedule, data-stream position and
    per-sample augmentation all carried over."""
    full_cfg = run_config(tmp_path / "full", tiny_world, [*SMOKE, *CKPT, "trainer.max_epochs=2"])
    train(full_cfg)
    first_cfg = run_config(
        tmp_path / "a",
        tiny_world,
        [
            *SMOKE,
            *CKPT,
            "trainer.max_epochs=2",
            *stop_after_overrides(1),
        ],
    )
    train(first_cfg)
    assert torch.load(_last_ckpt(tmp_path / "a" / "run"), weights_only=True)["global_step"] == 4
    resume_cfg = run_config(
        tmp_path / "b",
        tiny_world,
        [*SMOKE, *CKPT, "trainer.max_epochs=2", f"ckpt_path={_last_ckpt(tmp_path / 'a' / 'run')}"],
    )
    train(resume_cfg)
    full = torch.load(_last_ckpt(tmp_path / "full" / "run"), map_location="cpu", weights_only=True)
    resumed = torch.load(_last_ckpt(tmp_path / "b" / "run"), map_location="cpu", weights_only=True)
    assert resumed["global_step"] == full["global_step"] == 8
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    dm_key = next(k for k in full if "MultiPoseDataModule" in k)
    assert full[dm_key] == resumed[dm_key]


def test_wandb_offline_run(tmp_path, tiny_world, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = run_config(tmp_path, tiny_world, [*SMOKE, "logger=wandb", "+trainer.fast_dev_run=true"])
    train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs, list((tmp_path / "run").rglob("*"))[:20]
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())


def test_unknown_dataset_in_loss_weights_is_named(tmp_path, tiny_world):
    cfg = run_config(tmp_path, tiny_world, [*SMOKE, "+loss.dataset_weights.syn_cocoo=2.0"])
    with pytest.raises(ValueError, match="syn_cocoo"):
        train(cfg)


def test_missing_annotation_file_is_named(tmp_path, tiny_world):
    cfg = run_config(
        tmp_path, tiny_world, [*SMOKE, "data.datasets.syn_coco.val.ann_file=syn_coco/annotations/nope.json"]
    )
    with open_dict(cfg):
        cfg.data.synthetic = None  # a real dataset entry: files are checked before anything is built
    with pytest.raises(ValueError, match="nope.json"):
        train(cfg)


def test_skeleton_head_size_mismatch_is_named():
    from multipose.models.build import model_from_config

    config = {
        "backbone": {
            "name": "vit_tiny",
            "ffn": "shared",
            "img_size": [64, 48],
            "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2},
        },
        "head": {"type": "classic", "deconv_filters": [8, 8]},
        "heads": {"syn_coco": {"skeleton": "coco", "num_keypoints": 14}},
    }
    with pytest.raises(ValueError, match="syn_coco.*14.*coco.*17"):
        model_from_config(config)


def test_multirun_two_jobs(tmp_path, tiny_world):
    run_train_cli(
        [
            "-m",
            *SMOKE,
            "trainer.max_epochs=1",
            "loss.heatmap=0.5,1.0",
            f"paths.root_dir={tmp_path}",
            f"data.root={tiny_world}",
            "print_config=false",
        ],
        check=True,
    )
    metrics = sorted((tmp_path / "logs").rglob("metrics.json"))
    assert len(metrics) == 2, metrics
    losses = [json.loads(p.read_text())["train/loss"] for p in metrics]
    assert losses[0] != losses[1]


@pytest.mark.slow
def test_ddp_two_processes_cpu(tmp_path, tiny_world):
    run_train_cli(
        [
            *SMOKE,
            "trainer=ddp_cpu",
            "trainer.max_epochs=1",
            f"paths.root_dir={tmp_path}",
            f"data.root={tiny_world}",
            "print_config=false",
        ],
        check=True,
    )
    (metrics,) = list((tmp_path / "logs").rglob("metrics.json"))
    assert "val/syn_coco/AP" in json.loads(metrics.read_text())
