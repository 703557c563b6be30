"""W&B for sweeps, offline: runs grouped under the sweep and named by their swept values, the config flat, best
values in the summary; the saved-workspace spec (a pure function) and its wandb_workspaces objects."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from conftest import REPO, compose
from multipose.report.wandb_workspace import (
    DEFAULT_LOSS_TERMS,
    build_workspace,
    spec_from_sweep,
    workspace_spec,
)
from test_sweep import make_sweep_dir


@pytest.fixture()
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


@pytest.fixture()
def multirun_job(tmp_path):
    """A Hydra multirun job context (as the launcher sets it): job 3 of a sweep over loss.heatmap."""
    from hydra.core.hydra_config import HydraConfig

    sweep_dir = tmp_path / "2026-01-01_10-00-00"
    sweep_dir.mkdir()
    (sweep_dir / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": ["+experiment=smoke", "loss.heatmap=0.5,1.0"]}}})
    )
    cfg = compose("train", ["+experiment=smoke", "loss.heatmap=0.5"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = str(sweep_dir)
        cfg.hydra.job.num = 3
        cfg.hydra.overrides.task = ["+experiment=smoke", "loss.heatmap=0.5"]
    HydraConfig.instance().set_config(cfg)
    yield sweep_dir
    HydraConfig.instance().cfg = None


def _logger(tmp_path: Path, **kwargs):
    from multipose.report.wandb_run import SweepWandbLogger

    return SweepWandbLogger(save_dir=str(tmp_path), project="multipose-test", task_name="smoke", **kwargs)


def test_multirun_job_is_grouped_by_sweep_named_by_swept_values_and_logs_a_flat_config(
    tmp_path, wandb_offline, multirun_job
):
    logger = _logger(tmp_path)
    run = logger.experiment
    assert run.group == "smoke_2026-01-01_10-00-00"
    assert run.name == "3: loss.heatmap=0.5"
    logger.log_hyperparams(
        {"loss": {"heatmap": 0.5, "posebh": {"alpha": 3.33e-6}}, "data": {"input_size": [64, 48]}}
    )
    assert run.config["loss.heatmap"] == 0.5 and run.config["loss.posebh.alpha"] == 3.33e-6
    assert list(run.config["data.input_size"]) == [64, 48]
    assert "loss" not in run.config  # flat only: no nested copy
    assert run.config["sweep.job"] == 3 and run.config["sweep.group"] == run.group


def test_summary_holds_final_and_best_validation_values(tmp_path, wandb_offline):
    logger = _logger(tmp_path)
    logger.log_metrics({"val/score": 0.2, "val/syn_x/NME": 0.5, "train/loss": 1.0}, step=1)
    logger.log_metrics({"val/score": 0.1, "val/syn_x/NME": 0.3, "train/loss": 0.5}, step=2)
    summary = logger.experiment.summary
    assert summary["val/score"] == pytest.approx(0.1)  # final
    assert summary["best/val/score"] == pytest.approx(0.2)  # best: max for scores
    assert summary["best/val/syn_x/NME"] == pytest.approx(0.3)  # min where lower is better
    assert "best/train/loss" not in set(summary.keys())  # only validation metrics get a best value
    import wandb

    wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())


def test_single_run_keeps_the_task_group_and_the_config_targets_the_sweep_logger(tmp_path, wandb_offline):
    assert _logger(tmp_path).experiment.group == "smoke"
    cfg = compose("train", ["logger=wandb"])
    assert cfg.logger.wandb._target_ == "multipose.report.wandb_run.SweepWandbLogger"
    assert cfg.logger.wandb.group is None and OmegaConf.select(cfg, "logger.wandb.task_name") == "train"


def test_workspace_spec_has_parallel_coordinates_scatter_curves_losses_and_pictures():
    spec = workspace_spec(
        "posebh_demo_2026",
        {"loss.posebh.alpha": [3.33e-6, 3.33e-5], "optim.lr": [1e-3, 2e-3]},
        {"syn_coco": "val/syn_coco/AP", "syn_mpii": "val/syn_mpii/PCKh@0.5"},
        pictures=["pictures/val_syn_coco", "pictures/posebh_similarity"],
    )
    assert spec["group"] == "posebh_demo_2026"
    sections = {s["name"]: s["panels"] for s in spec["sections"]}
    sweep, per_dataset, curves, losses, pictures = sections.values()
    parallel = sweep[0]
    assert parallel["type"] == "parallel_coordinates"
    assert parallel["columns"][:2] == [
        {"config": "loss.posebh.alpha", "log": True},
        {"config": "optim.lr", "log": False},
    ]
    assert [c["summary"] for c in parallel["columns"][2:]] == [
        "val/score",
        "val/syn_coco/AP",
        "val/syn_mpii/PCKh@0.5",
    ]
    assert [(p["x"]["config"], p["y"]["summary"], p["log_x"]) for p in sweep[1:]] == [
        ("loss.posebh.alpha", "val/score", True),
        ("optim.lr", "val/score", False),
    ]
    assert len(per_dataset) == 4 and {p["y"]["summary"] for p in per_dataset} == {
        "val/syn_coco/AP",
        "val/syn_mpii/PCKh@0.5",
    }
    assert [p["y"][0]["metric"] for p in curves] == ["val/score", "val/syn_coco/AP", "val/syn_mpii/PCKh@0.5"]
    assert [p["y"][0]["metric"] for p in losses] == list(DEFAULT_LOSS_TERMS)
    assert "train/posebh/ppc" in DEFAULT_LOSS_TERMS
    assert [p["keys"] for p in pictures] == [["pictures/val_syn_coco"], ["pictures/posebh_similarity"]]
    # no pictures known: no empty section
    bridge = workspace_spec("g", {"a": [1]}, {}, extra_metrics=["val/syn_coco/proto/AP"])
    assert [
        p["y"][0]["metric"] for s in bridge["sections"] if s["name"] == "Bridge metrics" for p in s["panels"]
    ] == ["val/syn_coco/proto/AP"]
    bare = workspace_spec("g", {"a": [1, 2]}, {}, loss_terms=[])
    assert [s["name"] for s in bare["sections"]] == ["Sweep: a vs val/score", "Validation curves per dataset"]


def test_spec_from_a_local_sweep_and_the_workspace_objects_build_offline(tmp_path):
    spec = spec_from_sweep(make_sweep_dir(tmp_path / "2026-01-01_10-00-00", with_pictures=True))
    assert spec["group"] == "posebh_demo_2026-01-01_10-00-00"  # what SweepWandbLogger named the runs' group
    panels = [p for s in spec["sections"] for p in s["panels"]]
    assert [c.get("config") for c in panels[0]["columns"][:2]] == ["loss.posebh.alpha", "optim.lr"]
    assert panels[0]["columns"][0]["log"] is True  # 3.33e-6 .. 3.33e-4
    assert any(p.get("keys") == ["pictures/val_syn_coco"] for p in panels)
    assert any(p["type"] == "line" and p["y"][0]["metric"] == "train/loss" for p in panels)
    bridge = next(s["panels"] for s in spec["sections"] if s["name"] == "Bridge metrics")
    assert [p["y"][0]["metric"] for p in bridge] == ["val/syn_coco/proto/AP"]  # a bridge variant of job 1
    pytest.importorskip(
        "wandb_workspaces", reason="the sweeps extra is not installed: pip install -e '.[sweeps]'"
    )
    workspace = build_workspace(spec, "my-team", "multipose")
    assert [len(s.panels) for s in workspace.sections] == [len(s["panels"]) for s in spec["sections"]]
    assert spec["group"] in str(workspace.runset_settings.filters)
    workspace._to_model()  # the saved form serialises without a network call


def test_workspace_script_dry_run_prints_the_spec(tmp_path, capsys):
    path = REPO / "scripts" / "wandb_workspace.py"
    module_spec = importlib.util.spec_from_file_location("wandb_workspace_script", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    sweep_dir = make_sweep_dir(tmp_path / "s")
    assert script.main([str(sweep_dir), "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == spec_from_sweep(sweep_dir)
    assert script.main([str(sweep_dir)]) == 2  # saving needs --entity
    assert "--entity" in capsys.readouterr().err
