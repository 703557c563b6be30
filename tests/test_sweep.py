"""Multirun bookkeeping (multipose.utils.sweep): a failing job does not stop the sweep, and the sweep summary
(swept keys -> final / best metrics, failed jobs marked)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from multipose.report.sweep_callback import SweepSummary
from multipose.utils.cli import RunInterrupted
from multipose.utils.sweep import (
    FAILURE_FILE,
    check_swept_keys,
    read_sweep,
    run_job,
    summary_markdown,
    sweep_group,
    swept_overrides,
    write_summary,
)
from train_helpers import run_train_cli

HISTORY_HEADER = ["epoch", "step", "train/loss", "val/score", "val/syn_coco/AP", "val/syn_mpii/PCKh@0.5"]


def make_job(
    root: Path,
    num: int,
    overrides: list[str],
    metrics: dict | None,
    history: list[list] | None = None,
    failure: str | None = None,
    pictures: dict[str, object] | None = None,
) -> Path:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    datasets = {"syn_coco": {"metric": "coco"}, "syn_mpii": {"metric": "pckh"}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"datasets": datasets}}))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if history:
        (job / "csv" / "version_0").mkdir(parents=True)
        with open(job / "csv" / "version_0" / "metrics.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HISTORY_HEADER)
            writer.writerows(history)
    if failure:
        (job / FAILURE_FILE).write_text(
            json.dumps({"status": "failed", "error": "ValueError", "message": failure})
        )
    for name, image in (pictures or {}).items():
        import cv2

        (job / "pictures").mkdir(exist_ok=True)
        cv2.imwrite(str(job / "pictures" / f"{name}.png"), image)
    return job


def make_sweep_dir(root: Path, with_pictures: bool = False) -> Path:
    """Four jobs of `-m loss.posebh.alpha=... optim.lr=...`: two finished, one failed, one killed (no files)."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    common = ["+experiment=posebh_demo", "paths.root_dir=/somewhere"]
    (root / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "task_name": "posebh_demo",
                "optimized_metric": "val/score",
                "hydra": {
                    "overrides": {
                        "task": [*common, "loss.posebh.alpha=3.33e-6,3.33e-4", "optim.lr=1e-3,2e-3"]
                    }
                },
            }
        )
    )
    pics = {"val_syn_coco": np.full((40, 60, 3), 120, np.uint8)} if with_pictures else None
    # job 0: best val/score in the middle of training (0.30), final 0.25
    make_job(
        root,
        0,
        [*common, "loss.posebh.alpha=3.33e-6", "optim.lr=1e-3"],
        {"val/score": 0.25, "val/syn_coco/AP": 0.2, "val/syn_mpii/PCKh@0.5": 0.3, "train/loss": 0.01},
        [[0, 10, 0.02, "", "", ""], [0, 10, "", 0.30, 0.28, 0.32], [1, 20, "", 0.25, 0.2, 0.3]],
        pictures=pics,
    )
    make_job(
        root,
        1,
        [*common, "loss.posebh.alpha=3.33e-4", "optim.lr=1e-3"],
        {
            "val/score": 0.4,
            "val/syn_coco/AP": 0.35,
            "val/syn_mpii/PCKh@0.5": 0.45,
            "val/syn_coco/proto/AP": 0.1,
        },
        [[1, 20, "", 0.4, 0.35, 0.45]],
    )
    make_job(
        root, 2, [*common, "loss.posebh.alpha=3.33e-6", "optim.lr=2e-3"], None, failure="boom: lr too high"
    )
    make_job(root, 3, [*common, "loss.posebh.alpha=3.33e-4", "optim.lr=2e-3"], None)
    return root


def test_read_sweep_finds_swept_keys_status_final_and_best(tmp_path):
    sweep = read_sweep(make_sweep_dir(tmp_path / "sweep"))
    assert [j.num for j in sweep.jobs] == [0, 1, 2, 3]
    assert sweep.swept == ["loss.posebh.alpha", "optim.lr"]  # the common overrides are not swept
    assert [j.status for j in sweep.jobs] == ["ok", "ok", "failed", "missing"]
    assert "boom" in sweep.jobs[2].error
    assert sweep.datasets == {"syn_coco": "val/syn_coco/AP", "syn_mpii": "val/syn_mpii/PCKh@0.5"}
    job0 = sweep.jobs[0]
    assert job0.final("val/score") == 0.25 and job0.best("val/score") == pytest.approx(0.30)
    assert job0.best("train/loss") == pytest.approx(0.01)  # lower is better for losses
    assert math.isnan(sweep.jobs[2].final("val/score"))
    assert sweep.best_job() is sweep.jobs[1]
    assert sweep.objective == "val/score"


def test_summary_files_mark_failed_jobs_and_hold_final_and_best(tmp_path):
    root = make_sweep_dir(tmp_path / "sweep")
    sweep, csv_path, md_path = write_summary(root)
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "missing"]
    assert rows[0]["loss.posebh.alpha"] == "3.33e-6" and rows[0]["optim.lr"] == "1e-3"
    assert float(rows[0]["val/score"]) == 0.25 and float(rows[0]["best val/score"]) == pytest.approx(0.30)
    assert float(rows[1]["val/syn_coco/AP"]) == pytest.approx(0.35)
    assert rows[2]["val/score"] == "nan" and "boom" in rows[2]["error"]
    md = md_path.read_text()
    assert md == summary_markdown(sweep)
    assert "2 not finished" in md and "| 2 | failed |" in md and "**0.4000**" in md  # best job in bold
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_read_sweep_names_the_folder_when_it_holds_no_job(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job directories"):
        read_sweep(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such multirun"):
        read_sweep(tmp_path / "nope")


def test_run_job_records_a_failure_in_a_multirun_and_raises_in_a_single_run(tmp_path):
    def boom():
        raise RuntimeError("exploded")

    assert run_job(boom, tmp_path, multirun=True) is None
    record = json.loads((tmp_path / FAILURE_FILE).read_text())
    assert record["error"] == "RuntimeError" and record["message"] == "exploded"
    assert "boom" in record["traceback"]
    assert run_job(lambda: {"val/score": 1.0}, tmp_path / "ok", multirun=True) == {"val/score": 1.0}
    with pytest.raises(RuntimeError, match="exploded"):
        run_job(boom, tmp_path / "single", multirun=False)
    assert not (tmp_path / "single" / FAILURE_FILE).exists()

    def stopped():
        raise RunInterrupted(15, None)

    with pytest.raises(RunInterrupted):  # Ctrl-C / SIGTERM still stop the whole sweep
        run_job(stopped, tmp_path / "stop", multirun=True)
    with pytest.raises(KeyboardInterrupt):
        run_job(lambda: (_ for _ in ()).throw(KeyboardInterrupt()), tmp_path / "kb", multirun=True)

    def workers_terminated():  # SIGTERM sent to the process group reaches the DataLoader workers first
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Terminated. ")

    with pytest.raises(RunInterrupted) as stop:
        run_job(workers_terminated, tmp_path / "term", multirun=True)
    assert stop.value.exit_code == 143 and not (tmp_path / "term" / FAILURE_FILE).exists()

    def worker_oom():  # a worker killed for memory is a failure of this job only
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Killed. ")

    assert run_job(worker_oom, tmp_path / "oom", multirun=True) is None


def test_group_and_swept_overrides_of_a_job(tmp_path):
    root = make_sweep_dir(tmp_path / "2026-01-01_10-00-00")
    assert sweep_group(root, "posebh_demo") == "posebh_demo_2026-01-01_10-00-00"
    job = ["+experiment=posebh_demo", "paths.root_dir=/x", "loss.posebh.alpha=3.33e-6", "optim.lr=1e-3"]
    assert swept_overrides(root, job) == ["loss.posebh.alpha=3.33e-6", "optim.lr=1e-3"]


def test_sweeping_bridge_weights_without_the_bridge_fails_before_the_first_job(tmp_path):
    from omegaconf import OmegaConf

    from multipose.config_validation import ConfigError

    cfg = OmegaConf.create({"loss": {"heatmap": 1.0}, "bridge": None})
    with pytest.raises(ConfigError, match=r"\+bridge=posebh"):
        check_swept_keys(cfg, ["loss.posebh.alpha"])
    check_swept_keys(OmegaConf.create({"loss": {}, "bridge": {"posebh": {}}}), ["loss.posebh.alpha"])
    check_swept_keys(cfg, ["loss.heatmap", "optim.lr"])  # not bridge keys: nothing to say
    hydra = {"sweep": {"dir": str(tmp_path / "s")}, "sweeper": {"params": {"loss.posebh.beta": "1,2"}}}
    with pytest.raises(ConfigError, match="loss.posebh.beta"):
        SweepSummary(report=False).on_multirun_start(
            OmegaConf.create({**OmegaConf.to_container(cfg), "hydra": hydra})
        )


COMMON = ["+experiment=smoke", "trainer.max_epochs=1"]


def test_a_sweep_survives_a_failing_job(tmp_path, tiny_world):
    """A real multirun: job 1 crashes in the optimiser (negative learning rate); job 0 finishes, the sweep exits 0
    and its summary marks job 1 failed."""
    common = [*COMMON, f"paths.root_dir={tmp_path}", f"data.root={tiny_world}"]
    proc = run_train_cli(["-m", *common, "print_config=false", "optim.lr=1.0e-3,-1.0"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (sweep_dir,) = (tmp_path / "logs" / "smoke" / "multiruns").iterdir()
    assert (sweep_dir / "0" / "metrics.json").is_file()
    record = json.loads((sweep_dir / "1" / FAILURE_FILE).read_text())
    assert "Invalid learning rate" in record["message"]
    rows = list(csv.DictReader(open(sweep_dir / "sweep_summary.csv")))
    assert [(float(r["optim.lr"]), r["status"]) for r in rows] == [(1e-3, "ok"), (-1.0, "failed")]
    assert float(rows[0]["val/score"]) >= 0.0
    assert "| 1 | failed |" in proc.stdout  # the table is printed at the end
    assert (sweep_dir / "report.html").is_file()


@pytest.mark.slow
def test_the_same_failure_in_a_single_run_exits_non_zero(tmp_path, tiny_world):
    common = [*COMMON, f"paths.root_dir={tmp_path}", f"data.root={tiny_world}"]
    single = run_train_cli([*common, "optim.lr=-1.0"])
    assert single.returncode != 0
    (run_dir,) = (tmp_path / "logs" / "smoke" / "runs").iterdir()
    assert not (run_dir / FAILURE_FILE).exists()
