"""Sweep configs compose: hparams_search=posebh_optuna (Optuna sweeper, log-uniform α/β/γ around the paper's
values), hydra/launcher=slurm / submitit_slurm (sized from the trainer), the sweep-summary Hydra callback. The
plugin tests skip where the `sweeps` extra is not installed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose

PAPER = {"alpha": 3.33e-6, "beta": 1.25e-7, "gamma": 1.25e-8}
STAND_IN_BRIDGE = """# @package _global_
bridge:
  posebh: {}
loss:
  posebh: {alpha: 3.33e-6, beta: 1.25e-7, gamma: 1.25e-8, zeta: 1.0e-3, delta: 0.01}
"""


def _stand_in(tmp_path: Path) -> str:
    """A search-path folder with a stand-in conf/bridge/posebh.yaml (the real one wins where it exists: the
    package's conf/ comes first on Hydra's search path)."""
    (tmp_path / "bridge").mkdir()
    (tmp_path / "bridge" / "posebh.yaml").write_text(STAND_IN_BRIDGE)
    return f"hydra.searchpath=[file://{tmp_path}]"


def test_every_run_has_the_sweep_summary_callback():
    cfg = compose("train", [], return_hydra_config=True)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "multipose.report.sweep_callback.SweepSummary"


def test_posebh_optuna_searches_log_uniform_ranges_around_the_papers_weights(tmp_path):
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper",
        reason="the sweeps extra is not installed: pip install -e '.[sweeps]'",
    )
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose(
        "train",
        [_stand_in(tmp_path), "+bridge=posebh", "hparams_search=posebh_optuna"],
        return_hydra_config=True,
    )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(cfg.hydra.mode).endswith("MULTIRUN")
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/score"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    parser = OverridesParser.create()
    params = dict(sweeper.params)
    assert set(params) == {f"loss.posebh.{k}" for k in PAPER}
    for name, paper in PAPER.items():
        key = f"loss.posebh.{name}"
        assert OmegaConf.select(cfg, key) == pytest.approx(paper)  # the swept key exists (set by the bridge)
        sweep = parser.parse_override(f"{key}={params[key]}").value()
        assert "log" in sweep.tags
        assert sweep.start < paper < sweep.end
        assert math.log10(paper / sweep.start) == pytest.approx(1.0, abs=0.01)
        assert math.log10(sweep.end / paper) == pytest.approx(1.0, abs=0.01)


def test_slurm_launcher_takes_nodes_and_tasks_from_the_trainer():
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher",
        reason="the sweeps extra is not installed: pip install -e '.[sweeps]'",
    )
    import hydra

    cfg = compose(
        "train",
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    instance = hydra.utils.instantiate(launcher)  # what Hydra builds before submitting (no SLURM needed)
    assert instance.params["nodes"] == 2 and instance.params["tasks_per_node"] == 4
    # the plugin's own option composes as well; single-device trainers give one task on one node
    plain = compose("train", ["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    assert plain.hydra.launcher._target_.endswith("SlurmLauncher")
    single = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert (single.nodes, single.tasks_per_node) == (1, 1)


@pytest.mark.slow
def test_an_optuna_sweep_records_a_failing_trial_and_goes_on(tmp_path, tiny_world):
    """A real Optuna search (the smoke model, 3 trials): trials with a negative learning rate fail in the
    optimiser; the study records them as failed and goes on, and the sweep summary marks them."""
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper",
        reason="the sweeps extra is not installed: pip install -e '.[sweeps]'",
    )
    import csv

    from train_helpers import run_train_cli

    proc = run_train_cli(
        [
            "-m",
            "+experiment=smoke",
            "trainer.max_epochs=1",
            f"paths.root_dir={tmp_path}",
            f"data.root={tiny_world}",
            "print_config=false",
            "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.direction=maximize",
            "hydra.sweeper.sampler.seed=0",
            "loss.heatmap=tag(log, interval(0.1, 10))",
            "optim.lr=choice(1.0e-3, -1.0)",
        ],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (sweep_dir,) = (tmp_path / "logs" / "smoke" / "multiruns").iterdir()
    rows = list(csv.DictReader(open(sweep_dir / "sweep_summary.csv")))
    assert len(rows) == 3
    assert {(float(r["optim.lr"]) < 0, r["status"]) for r in rows} <= {(True, "failed"), (False, "ok")}
    assert (sweep_dir / "optimization_results.yaml").is_file()
