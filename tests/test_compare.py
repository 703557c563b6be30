"""The comparison protocol (``scripts/compare.py``, ``multipose.compare``): the table and its noise floor,
run identity and reuse, failure reporting, same batches whatever the method, hidden ground truth kept out of
training, and the ``cpu_study`` stage-0 preset."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from conftest import REPO, compose
from multipose.compare import (
    BATCH_DIGEST_TARGET,
    ProtocolError,
    config_key,
    csv_report,
    execute,
    markdown_report,
    method_name_from,
    plan_continuation,
    plan_stage0,
    run_lines,
    run_state,
    summarize,
)

CONF = REPO / "src" / "multipose" / "conf"


def _method_groups() -> list:
    """``+bridge=<name>`` / ``+prompt=<name>`` for every bridge and prompt config that exists (slow: each trains)."""
    found = []
    for group in ("bridge", "prompt"):
        for f in sorted((CONF / group).glob("*.yaml")) if (CONF / group).is_dir() else []:
            found.append(pytest.param([f"+{group}={f.stem}"], id=f"{group}={f.stem}", marks=pytest.mark.slow))
    return found


# ---------------------------------------------------------------------------------------------- the table


def _metrics(ap: float, pckh: float, chd: float, **extra: float) -> dict:
    return {
        "val/syn_coco/AP": ap,
        "val/syn_coco/AP50": ap + 0.1,
        "val/syn_mpii/PCKh@0.5": pckh,
        "val/syn_coco/cross/syn_mpii/AP": ap / 2,
        "val/syn_coco/consistency/CHD": chd,
        "val/score": (ap + pckh) / 2,
        "train/loss": 0.001,
        "data/skipped_images": 0,
        **extra,
    }


def test_summary_means_differences_and_noise_floor():
    base = [_metrics(0.20, 0.50, 0.040), _metrics(0.22, 0.56, 0.030)]
    meth = [_metrics(0.30, 0.52, 0.035), _metrics(0.26, 0.55, 0.033)]
    rows = {r.key: r for r in summarize(base, meth)}
    ap = rows["val/syn_coco/AP"]
    assert ap.section == "own"
    assert ap.base_mean == pytest.approx(0.21) and ap.method_mean == pytest.approx(0.28)
    assert ap.diff == pytest.approx(0.07)
    assert ap.base_spread == pytest.approx(0.02) and ap.method_spread == pytest.approx(0.04)
    assert ap.noise == pytest.approx(0.04) and ap.within_noise is False
    pckh = rows["val/syn_mpii/PCKh@0.5"]  # +0.005 against spreads 0.06 / 0.03
    assert pckh.diff == pytest.approx(0.005) and pckh.within_noise is True
    assert rows["val/syn_coco/cross/syn_mpii/AP"].section == "cross"
    assert rows["val/syn_coco/consistency/CHD"].section == "consistency"
    assert rows["val/score"].section == "own"
    assert rows["val/syn_coco/AP50"].section == "other"
    assert "train/loss" not in rows and "data/skipped_images" not in rows  # not comparable / not metrics


def test_method_only_keys_compare_variants_with_the_plain_baseline_metric():
    base = [_metrics(0.20, 0.5, 0.04), _metrics(0.22, 0.5, 0.04)]
    extra = {
        "val/syn_coco/acae/AP": 0.25,
        "val/syn_coco/cross/syn_mpii/acae/AP": 0.12,
        "val/syn_coco/acae/residual": 0.01,
        "train/acae/consistency": 0.3,
    }
    meth = [_metrics(0.21, 0.5, 0.04, **extra), _metrics(0.21, 0.5, 0.04, **extra)]
    rows = {r.key: r for r in summarize(base, meth)}
    variant = rows["val/syn_coco/acae/AP"]
    assert variant.section == "method" and variant.baseline_key == "val/syn_coco/AP"
    assert variant.diff == pytest.approx(0.25 - 0.21)
    assert rows["val/syn_coco/cross/syn_mpii/acae/AP"].baseline_key == "val/syn_coco/cross/syn_mpii/AP"
    residual = rows["val/syn_coco/acae/residual"]
    assert residual.baseline_key is None and math.isnan(residual.diff) and residual.within_noise is None
    assert rows["train/acae/consistency"].section == "method"
    md = markdown_report(list(rows.values()), ["- header"], "acae")
    assert "val/syn_coco/acae/AP (vs val/syn_coco/AP)" in md
    assert "val/syn_coco/acae/residual" in md
    assert "train/acae/consistency" not in md  # last-step training values: CSV only
    assert "train/acae/consistency" in csv_report(list(rows.values()))


def test_single_seed_has_no_noise_floor_and_reports_say_so():
    rows = summarize([_metrics(0.2, 0.5, 0.04)], [_metrics(0.3, 0.5, 0.04)])
    ap = next(r for r in rows if r.key == "val/syn_coco/AP")
    assert math.isnan(ap.noise) and ap.within_noise is None
    md = markdown_report(rows, [], "m")
    assert "| val/syn_coco/AP | 0.2000 | 0.3000 | +0.1000 | — | — | n/a |" in md


def test_markdown_flags_and_csv_round_trip():
    base = [_metrics(0.20, 0.50, 0.04), _metrics(0.21, 0.50, 0.04)]
    meth = [_metrics(0.40, 0.50, 0.04), _metrics(0.41, 0.50, 0.04)]
    rows = summarize(base, meth)
    md = markdown_report(rows, ["- stage 0: x"], "better")
    assert "| val/syn_coco/AP | 0.2050 | 0.4050 | +0.2000 | 0.0100 | 0.0100 | **beyond noise** |" in md
    assert "## Own dataset" in md and "## Cross-skeleton AP" in md and "## Cross-head consistency" in md
    assert "val/syn_coco/AP50" not in md  # "other" keys: CSV only
    table = list(csv.DictReader(io.StringIO(csv_report(rows))))
    ap = next(r for r in table if r["key"] == "val/syn_coco/AP")
    assert float(ap["diff"]) == pytest.approx(0.2) and ap["within_noise"] == "false"
    assert [float(v) for v in ap["method_values"].split()] == [0.40, 0.41]
    assert any(r["key"] == "val/syn_coco/AP50" for r in table)


def test_method_name_from_overrides():
    assert method_name_from(["+bridge=acae"]) == "acae"
    assert method_name_from(["+experiment=posebh_demo", "loss.posebh.alpha=1e-5"]) == (
        "posebh_demo_loss.posebh.alpha-1e-5"
    )


def test_old_import_path_and_the_digest_target_still_resolve():
    """``multipose.utils.compare`` serves the same objects as ``multipose.compare``, and the batch-digest target
    written into every run's config (part of its key) names a class Hydra can still import."""
    from hydra.utils import get_class

    import multipose.compare as new
    import multipose.utils.compare as old

    for name in new.__all__:
        assert getattr(old, name) is getattr(new, name), name
    assert get_class(BATCH_DIGEST_TARGET) is new.BatchDigest


# ---------------------------------------------------------------------------------------------- plans


@pytest.fixture
def fake_ckpt(tmp_path) -> Path:
    p = tmp_path / "stage0.ckpt"
    p.write_bytes(b"weights v1")
    return p


def test_plan_sets_the_protocol_and_keys_on_content(tmp_path, fake_ckpt):
    plan = plan_continuation("baseline", 1, fake_ckpt, 300, 5, tmp_path / "out", base=["loss.heatmap=1.5"])
    assert f"init_from={fake_ckpt.resolve()}" in plan.overrides
    for o in (
        "seed=1",
        "trainer.max_epochs=5",
        "data.steps_per_epoch=60",
        "trainer.check_val_every_n_epoch=5",
    ):
        assert o in plan.overrides
    assert f"+callbacks.batch_digest._target_={BATCH_DIGEST_TARGET}" in plan.overrides
    assert plan.run_dir.parent == (tmp_path / "out" / "runs").resolve()
    # the key follows the checkpoint's content, not its file name
    renamed = tmp_path / "other_name.ckpt"
    shutil.copy(fake_ckpt, renamed)
    same = plan_continuation("baseline", 1, renamed, 300, 5, tmp_path / "out", base=["loss.heatmap=1.5"])
    assert same.key == plan.key
    renamed.write_bytes(b"weights v2")
    assert (
        plan_continuation("baseline", 1, renamed, 300, 5, tmp_path / "out", base=["loss.heatmap=1.5"]).key
        != plan.key
    )
    # and the composed config: another seed, another base, another length are other runs
    assert (
        plan_continuation("baseline", 0, fake_ckpt, 300, 5, tmp_path / "out", base=["loss.heatmap=1.5"]).key
        != plan.key
    )
    assert plan_continuation("baseline", 1, fake_ckpt, 300, 5, tmp_path / "out").key != plan.key
    assert (
        plan_continuation("baseline", 1, fake_ckpt, 200, 5, tmp_path / "out", base=["loss.heatmap=1.5"]).key
        != plan.key
    )


@pytest.mark.parametrize(
    "override", ["trainer.max_epochs=3", "seed=4", "+init_from=x", "data.steps_per_epoch=7"]
)
def test_method_cannot_set_what_the_protocol_controls(tmp_path, fake_ckpt, override):
    with pytest.raises(ProtocolError, match="--method sets .*comparison protocol sets itself"):
        plan_continuation("m", 0, fake_ckpt, 10, 2, tmp_path, method=[override])


def test_bad_inputs_are_named(tmp_path, fake_ckpt):
    with pytest.raises(ProtocolError, match=r"\+experiment=no_such_preset.*do not compose"):
        plan_continuation("m", 0, fake_ckpt, 10, 2, tmp_path, method=["+experiment=no_such_preset"])
    with pytest.raises(ProtocolError, match=r"no_such_bridge.*(do not compose|not a valid training config)"):
        plan_continuation("m", 0, fake_ckpt, 10, 2, tmp_path, method=["+bridge=no_such_bridge"])
    with pytest.raises(ProtocolError, match="not a multiple of --epochs 3"):
        plan_continuation("m", 0, fake_ckpt, 10, 3, tmp_path)
    with pytest.raises(ProtocolError, match="does not exist"):
        plan_continuation("m", 0, tmp_path / "missing.ckpt", 10, 2, tmp_path)
    with pytest.raises(ProtocolError, match="--stage0-preset 'nope' is unknown"):
        plan_stage0("nope", tmp_path)


def test_stage0_cache_key_is_the_composed_config(tmp_path):
    a = plan_stage0("cpu_study", tmp_path / "cache")
    assert "+experiment=cpu_study" in a.overrides
    assert plan_stage0("cpu_study", tmp_path / "elsewhere").key == a.key
    assert plan_stage0("cpu_study", tmp_path / "cache", seed=1).key != a.key
    assert plan_stage0("default", tmp_path / "cache").key != a.key
    assert plan_stage0("cpu_study", tmp_path / "cache", shared=["data.sigma=3.0"]).key != a.key
    assert a.key == config_key(["+experiment=cpu_study", "seed=0"])
    assert a.run_dir.name == f"stage0_cpu_study_{a.key[:10]}"


# ---------------------------------------------------------------------------------------------- running


class FakeTrainer:
    """Stands in for ``python -m multipose.train``: writes what a run writes, or fails / stops on request."""

    def __init__(self, fail: set[str] = frozenset(), stop: set[str] = frozenset()):
        self.fail, self.stop, self.calls = set(fail), set(stop), []

    def __call__(self, cmd: list[str], log_file: Path) -> int:
        self.calls.append(cmd)
        run_dir = Path(next(c for c in cmd if c.startswith("hydra.run.dir=")).split("=", 1)[1])
        name = run_dir.name.rsplit("_", 1)[0]
        log_file.write_text("training ...\n")
        if name in self.fail:
            return 1
        if name in self.stop:  # Ctrl-C: last.ckpt written, no metrics
            self.stop.discard(name)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
            return 130
        seed = int(name.rsplit("seed", 1)[1])
        ap = 0.2 + 0.01 * seed + (0.1 if name.startswith("m_") else 0.0)
        (run_dir / "metrics.json").write_text(json.dumps(_metrics(ap, 0.5, 0.04)))
        (run_dir / "batch_digest.json").write_text(json.dumps({"global_step": 10, "digest": f"d{seed}"}))
        return 0


def _plans(tmp_path, ckpt):
    return [
        plan_continuation(arm, s, ckpt, 10, 2, tmp_path / "out", method=m)
        for s in (0, 1)
        for arm, m in (("baseline", []), ("m", ["loss.heatmap=2.0"]))
    ]


def test_execute_reuses_finished_runs_resumes_interrupted_ones_and_reports_failures(tmp_path, fake_ckpt):
    plans = _plans(tmp_path, fake_ckpt)
    fake = FakeTrainer(fail={"m_seed1"}, stop={"baseline_seed1"})
    results = execute(plans, launcher=fake, echo=lambda s: None)
    assert [r.status for r in results] == ["finished", "finished", "failed", "failed"]
    assert "exit code 130" in results[2].note and "exit code 1" in results[3].note
    assert run_state(plans[2]) == "interrupted" and run_state(plans[0]) == "done"

    def no_training(cmd, log_file):
        raise AssertionError("--report-only trained")

    report = execute(plans, launcher=no_training, echo=lambda s: None, train=False)
    assert [r.status for r in report] == ["reused", "reused", "missing", "missing"]
    assert "has not finished" in "\n".join(run_lines(report, 10))

    fake2 = FakeTrainer()
    results = execute(plans, launcher=fake2, echo=lambda s: None)
    assert [r.status for r in results] == ["reused", "reused", "resumed", "finished"]
    assert len(fake2.calls) == 2  # finished runs were not trained again
    assert f"ckpt_path={plans[2].run_dir / 'checkpoints' / 'last.ckpt'}" in fake2.calls[0]
    assert not any(c.startswith("ckpt_path=") for c in fake2.calls[1])
    assert all(r.ok for r in results)

    # another config in the same folder is another run, never a reuse of the old one
    other = plan_continuation("baseline", 0, fake_ckpt, 10, 2, tmp_path / "out", base=["loss.heatmap=3.0"])
    assert run_state(other) == "new"


def test_script_writes_tables_and_fails_loudly_with_a_failed_run(tmp_path, fake_ckpt, monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import compare as script
    finally:
        sys.path.remove(str(REPO / "scripts"))
    fake = FakeTrainer(fail={"m_seed1"})
    monkeypatch.setattr(
        script, "execute", lambda plans, train=True: execute(plans, fake, echo=lambda s: None, train=train)
    )
    out = tmp_path / "out"
    args = ["--stage0", str(fake_ckpt), "--method", "loss.heatmap=2.0", "--method-name", "m", "--steps", "10"]
    args += ["--epochs", "2", "--out", str(out)]
    code = script.main(args)
    assert code == 1  # a failed run makes the comparison fail, after writing the table
    md = (out / "comparison.md").read_text()
    assert "**m seed 1 failed** (exit code 1" in md
    assert "- seed 0: both arms trained on identical batches (same digest)" in md
    # one method seed left: the baseline's spread is the noise floor
    assert "| val/syn_coco/AP | 0.2050 | 0.3000 | +0.0950 | 0.0100 | — | **beyond noise** |" in md
    assert (out / "comparison.csv").read_text().startswith("section,key,")
    assert "Comparison: baseline vs m" in capsys.readouterr().out
    # --report-only trains nothing and lists the run that has not finished
    calls = len(fake.calls)
    assert script.main([*args, "--report-only"]) == 1
    assert len(fake.calls) == calls
    assert "**m seed 1 has not finished**" in (out / "comparison.md").read_text()


# ---------------------------------------------------------------------------------------------- training


def _train_cfg(tmp_path: Path, world: Path, overrides: list[str]):
    cfg = compose(
        "train",
        [
            "+experiment=smoke",
            "trainer.enable_model_summary=false",
            "+trainer.limit_val_batches=0",
            "validate=false",
            f"+callbacks.batch_digest._target_={BATCH_DIGEST_TARGET}",
            f"paths.root_dir={tmp_path}",
            f"data.root={world}",
            *overrides,
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(tmp_path)
        cfg.print_config = False
    return cfg


def _digest(tmp_path: Path, world: Path, overrides: list[str]) -> dict:
    from multipose.train import train

    train(_train_cfg(tmp_path, world, overrides))
    return json.loads((tmp_path / "run" / "batch_digest.json").read_text())


def test_same_seed_same_batches_whatever_the_method(tmp_path, tiny_world):
    """The two arms of a seed train on identical batches (images after augmentation, datasets, annotation ids,
    in order) and for the same number of steps, whatever the method changes in the model, the loss or the
    optimiser; another seed gives other batches (so the check can fail)."""
    base = _digest(tmp_path / "base", tiny_world, [])
    method = ["loss.heatmap=2.0", "model.head_bn=batch", "model.heads_on=all", "optim.lr=1e-4"]
    arm = _digest(tmp_path / "method", tiny_world, method)
    assert base["batches"] == arm["batches"] == base["global_step"] == arm["global_step"] == 8
    assert arm["digest"] == base["digest"]
    other_seed = _digest(tmp_path / "seed1", tiny_world, ["seed=1"])
    assert other_seed["digest"] != base["digest"]


@pytest.mark.parametrize("method", _method_groups())
def test_same_batches_with_every_bridge(tmp_path, tiny_world, method):
    base = _digest(tmp_path / "base", tiny_world, [])
    arm = _digest(tmp_path / "method", tiny_world, method)
    assert (arm["digest"], arm["global_step"]) == (base["digest"], base["global_step"])


def _poison_gt_all(node, rng):
    """Every ``gt_all`` of a JSON tree replaced by finite garbage of the same length (the readers refuse NaN)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "gt_all":
                node[k] = {s: (rng.uniform(-1e4, 1e4, len(flat))).round(1).tolist() for s, flat in v.items()}
            else:
                _poison_gt_all(v, rng)
    elif isinstance(node, list):
        for v in node:
            _poison_gt_all(v, rng)


@pytest.mark.parametrize("method", [pytest.param([], id="baseline"), *_method_groups()])
def test_hidden_ground_truth_never_reaches_a_training_loss(tmp_path, tiny_world, monkeypatch, method):
    """Training on a copy of the world whose training files carry garbage hidden ground truth (``gt_all``), and
    whose training records carry NaN ``extra_gt`` in memory, gives bit-identical losses and weights: only
    evaluators (validation files) and the oracle read hidden ground truth."""
    import multipose.data.datamodule as dm

    poisoned = tmp_path / "poisoned_world"
    shutil.copytree(tiny_world, poisoned)
    rng = np.random.default_rng(0)
    touched = 0
    for ann in poisoned.glob("*/annotations/train.json"):
        tree = json.loads(ann.read_text())
        _poison_gt_all(tree, rng)
        ann.write_text(json.dumps(tree))
        touched += 1
    assert touched >= 2

    common = ["data.synthetic=null", "callbacks=minimal", *method]
    from multipose.train import train

    clean_metrics = train(_train_cfg(tmp_path / "clean", tiny_world, common))

    real_read = dm.read_split
    seen = []

    def read_split_nan(entry, split, *args, **kwargs):
        out = real_read(entry, split, *args, **kwargs)
        if split == "train":
            for inst in out[0] if isinstance(out, tuple) else out:
                if inst.extra_gt:
                    seen.append(inst.ann_id)
                    inst.extra_gt = {k: np.full_like(v, np.nan) for k, v in inst.extra_gt.items()}
        return out

    monkeypatch.setattr(dm, "read_split", read_split_nan)
    poisoned_metrics = train(_train_cfg(tmp_path / "poisoned", poisoned, common))
    assert seen, "the training records carried no hidden ground truth to poison"

    for key in [k for k in clean_metrics if k.startswith("train/")]:
        assert math.isfinite(poisoned_metrics[key]), key
        assert poisoned_metrics[key] == clean_metrics[key], key
    clean = torch.load(tmp_path / "clean" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    dirty = torch.load(tmp_path / "poisoned" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert clean["global_step"] == dirty["global_step"] == 8
    for key, value in clean["state_dict"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, dirty["state_dict"][key]), key
        else:  # a module's extra state (e.g. the ACAE bridge's AE descriptions)
            assert value == dirty["state_dict"][key], key


# ---------------------------------------------------------------------------------------------- cpu_study


def test_cpu_study_trains_the_default_world_longer():
    default = compose("train", [])
    study = compose("train", ["+experiment=cpu_study"])
    steps = lambda c: int(c.trainer.max_epochs) * int(c.data.steps_per_epoch)  # noqa: E731
    assert steps(study) >= 3 * steps(default)
    # the same world, mix, model and metrics: only the length (and validation cadence) differ
    assert study.data.synthetic == default.data.synthetic and study.data.datasets == default.data.datasets
    assert (
        study.backbone == default.backbone
        and study.head == default.head
        and study.evaluation == default.evaluation
    )
    assert study.optim.milestones == default.optim.milestones  # fractions of the run: the schedule scales
    assert (
        int(study.trainer.max_epochs) % int(study.trainer.check_val_every_n_epoch) == 0
    )  # validates at the end
    assert study.task_name == "cpu_study"
    from multipose.config_validation import validate_train_config

    validate_train_config(study, check_files=False)


@pytest.mark.slow
def test_compare_script_end_to_end_on_the_tiny_world(tmp_path, tiny_world):
    """The real thing on the tiny world: stage 0 trained and cached, four continuations, the table; the second
    call reuses every run."""
    shared = (
        f"data=synthetic_small data.root={tiny_world} +experiment=smoke trainer.enable_progress_bar=false"
    )
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "compare.py"),
        "--method",
        "loss.heatmap=2.0",
        "--steps",
        "4",
        "--epochs",
        "2",
        "--shared",
        shared,
        "--stage0-preset",
        "default",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    ]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO / "src")}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "both arms trained on identical batches" in md and "val/syn_coco/AP" in md
    assert len(list((tmp_path / "cache").glob("stage0_default_*/checkpoints/last.ckpt"))) == 1
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("reusing") == 4 and "training in" not in second.stdout  # stage 0 too
