"""Runs that survive (issue 10): last.ckpt on epochs, steps, errors and signals (a real training process is
killed), resume / eval from a run directory, checkpoints that do not fit, config errors before the heavy imports,
quiet console, and every experiment x callbacks x logger combination."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from conftest import REPO, compose
from multipose.config_validation import ConfigError, experiment_precedence_notes, validate_train_config
from multipose.utils.checkpointing import RunCheckpoint, save_checkpoint_atomic
from multipose.utils.ckpt_fit import CheckpointMismatch, check_eval_fits, check_resume_fits
from multipose.utils.rundir import merge_overrides, restore_eval_config, restore_train_config
from train_helpers import run_config, run_train_cli, train_env

SMOKE = ["+experiment=smoke", "print_config=false"]


# ----------------------------------------------------------------------------------------------- helpers
class PauseAtStep(L.Callback):
    """Test helper: after optimiser step ``step`` write ``marker`` and wait (up to ``seconds``) so that the test
    can signal or kill the process at a known point; stops waiting once a stop was requested. Pauses once: a
    resumed run (same overrides, marker already written) does not stop."""

    def __init__(self, step: int, marker: str, seconds: float = 120.0):
        self.step, self.marker, self.seconds = int(step), Path(marker), float(seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.step or self.marker.exists():
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            if any(getattr(cb, "stop_signal", None) for cb in trainer.callbacks):
                return
            time.sleep(0.05)


class FailAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated failure at step {self.step}")


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


# ----------------------------------------------------------------------------------------------- point 1: saving
def test_last_checkpoint_every_n_steps_and_every_epoch(tmp_path, tiny_world, monkeypatch):
    saved_at = []
    original = RunCheckpoint.save

    def recording_save(self, trainer):
        saved_at.append(trainer.global_step)
        return original(self, trainer)

    monkeypatch.setattr(RunCheckpoint, "save", recording_save)
    from multipose.train import train

    cfg = run_config(
        tmp_path, tiny_world, [*SMOKE, "trainer.max_epochs=2", "callbacks.checkpoint.every_n_steps=3"]
    )
    train(cfg)
    assert saved_at == [3, 4, 6, 8]  # every 3 steps, and each epoch end (4 steps per epoch), never twice
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert _ckpt_step(ckpt) == 8
    assert not list(ckpt.parent.glob(".*.tmp")), "temporary files left behind"
    assert not list((tmp_path / "run").glob("csv/**/*.ckpt")), "a checkpoint landed in the logger's folder"


def test_exception_writes_last_checkpoint_then_reraises(tmp_path, tiny_world):
    from multipose.train import train

    cfg = run_config(
        tmp_path,
        tiny_world,
        [
            *SMOKE,
            "trainer.max_epochs=2",
            "+callbacks.fail._target_=test_runs.FailAtStep",
            "+callbacks.fail.step=6",
        ],
    )
    with pytest.raises(RuntimeError, match="simulated failure at step 6"):
        train(cfg)
    assert _ckpt_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 6  # epoch end was 4


class _FakeTrainer:
    is_global_zero = True

    def __init__(self, fail: bool):
        self.fail = fail

    def save_checkpoint(self, path, weights_only=False):
        Path(path).write_bytes(b"partial")
        if self.fail:
            raise OSError("disk full")
        Path(path).write_bytes(b"complete checkpoint")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_save_keeps_the_old_file_and_honours_the_umask(tmp_path, umask):
    target = tmp_path / "checkpoints" / "last.ckpt"
    old = os.umask(umask)
    try:
        save_checkpoint_atomic(_FakeTrainer(fail=False), target)
        assert target.read_bytes() == b"complete checkpoint"
        assert target.stat().st_mode & 0o777 == 0o666 & ~umask
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint_atomic(_FakeTrainer(fail=True), target)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"complete checkpoint"  # the failed write never touched it
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_metrics_file_honours_the_umask(tmp_path):
    from multipose.utils.run import write_metrics

    old = os.umask(0o022)
    try:
        path = write_metrics(tmp_path, {"val/x/AP": 0.5})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------------------- point 1: kill it
def _start_and_stop(
    args: list[str], marker: Path, sig: int, timeout: float = 300
) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "multipose.train", *args],
        cwd=REPO,
        env=train_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training ended before the pause point:\n" + proc.communicate()[0][-4000:])
        time.sleep(0.1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


KILL_RUN = [*SMOKE, "trainer.max_epochs=3"]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory, tiny_world) -> Path:
    """last.ckpt of the 3-epoch smoke run that the interrupted runs must reproduce."""
    root = tmp_path_factory.mktemp("full")
    proc = run_train_cli(
        [*KILL_RUN, f"paths.root_dir={root}", f"data.root={tiny_world}", f"hydra.run.dir={root / 'run'}"]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_killed_training_resumes_to_the_same_weights(tmp_path, tiny_world, uninterrupted_run, sig):
    """A real `python -m multipose.train` is stopped between checkpoints: with SIGINT / SIGTERM it finishes the
    step, writes last.ckpt (step 6, not an epoch end) and exits 130 / 143; with SIGKILL the periodic last.ckpt (step 6 of
    every 3) survives intact. `resume=<run dir>` then ends with the uninterrupted run's step count and
    bit-identical weights."""
    common = [*KILL_RUN, f"paths.root_dir={tmp_path}", f"data.root={tiny_world}"]

    every = "3" if sig == signal.SIGKILL else "0"
    pause_step = 7 if sig == signal.SIGKILL else 5
    marker = tmp_path / "paused"
    run_a = tmp_path / "a"
    stopped = _start_and_stop(
        [
            *common,
            f"hydra.run.dir={run_a}",
            f"callbacks.checkpoint.every_n_steps={every}",
            "+callbacks.pause._target_=test_runs.PauseAtStep",
            f"+callbacks.pause.step={pause_step}",
            f"+callbacks.pause.marker={marker}",
        ],
        marker,
        sig,
    )
    ckpt = run_a / "checkpoints" / "last.ckpt"
    if sig != signal.SIGKILL:
        assert stopped.returncode == 128 + sig, stopped.stdout[-3000:]
        assert "resume=" in stopped.stdout and str(run_a) in stopped.stdout
    else:
        assert stopped.returncode == -signal.SIGKILL
    assert _ckpt_step(ckpt) == 6
    assert not list(ckpt.parent.glob(".*.tmp"))

    resumed = run_train_cli([f"resume={run_a}", f"hydra.run.dir={tmp_path / 'b'}"])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resuming run" in resumed.stdout + resumed.stderr
    final = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert _ckpt_step(final) == _ckpt_step(uninterrupted_run) == 12
    want, got = _weights(uninterrupted_run), _weights(final)
    for key, value in want.items():
        assert torch.equal(value, got[key]), key
    # the resumed run directory is a complete run of its own: its saved config is the effective one
    saved = OmegaConf.load(tmp_path / "b" / ".hydra" / "config.yaml")
    assert saved.task_name == "smoke" and saved.trainer.max_epochs == 3


# ----------------------------------------------------------------------------------------------- point 3
def test_merge_overrides_new_values_replace_saved_ones():
    merged = merge_overrides(
        ["+experiment=smoke", "trainer.max_epochs=2", "data.root=/w"],
        ["trainer.max_epochs=4", "resume=/r"],
        drop=("resume",),
    )
    assert merged == ["+experiment=smoke", "data.root=/w", "trainer.max_epochs=4"]


def _fake_run(tmp_path: Path, overrides: list[str]) -> Path:
    run = tmp_path / "old_run"
    cfg = compose("train", overrides)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run


def test_resume_restores_the_run_config_and_reports_the_diff(tmp_path):
    run = _fake_run(tmp_path, ["+experiment=smoke", "loss.heatmap=0.5"])
    cfg, overrides, diff = restore_train_config(run, ["trainer.max_epochs=5"])
    assert cfg.task_name == "smoke" and cfg.loss.heatmap == 0.5 and cfg.trainer.max_epochs == 5
    assert cfg.ckpt_path == str((run / "checkpoints" / "last.ckpt").resolve())
    assert "trainer.max_epochs: 2 -> 5" in diff
    assert not any(line.startswith("loss.") for line in diff)
    assert overrides[:3] == ["+experiment=smoke", "loss.heatmap=0.5", "trainer.max_epochs=5"]
    assert cfg.resume == str(run.resolve())


def test_resume_errors_name_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        restore_train_config(tmp_path / "nope", [])
    run = _fake_run(tmp_path, ["+experiment=smoke"])
    with pytest.raises(ConfigError, match="is a checkpoint file"):
        restore_train_config(run / "checkpoints" / "last.ckpt", [])
    (run / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        restore_train_config(run, [])


def test_eval_run_takes_the_runs_data_and_checkpoint(tmp_path):
    run = _fake_run(tmp_path, ["+experiment=smoke", "data.val_batch_size=3"])
    cfg = compose("eval", [f"run={run}", "data.num_workers=1"])
    diff = restore_eval_config(cfg, run, [f"run={run}", "data.num_workers=1"])
    assert list(cfg.data.datasets) == ["syn_coco", "syn_mpii"]  # synthetic_small, from the run
    assert cfg.data.val_batch_size == 3 and cfg.data.num_workers == 1
    assert cfg.ckpt_path == str((run / "checkpoints" / "last.ckpt").resolve())
    assert any(line.startswith("data.datasets") or line.startswith("data.root") for line in diff)


def _fake_checkpoint(path: Path, model_config: dict) -> Path:
    torch.save({"hyper_parameters": {"model_config": model_config}, "state_dict": {}}, path)
    return path


SMOKE_MODEL = {
    "backbone": {
        "name": "vit_tiny",
        "ffn": "shared",
        "img_size": [64, 48],
        "num_experts": 2,
        "overrides": {"embed_dim": 64, "depth": 2, "num_heads": 2},
    },
    "head": {"type": "classic", "deconv_filters": [32, 32]},
    "heads": {
        "syn_coco": {"skeleton": "coco", "num_keypoints": 17},
        "syn_mpii": {"skeleton": "mpii", "num_keypoints": 16},
    },
}


def test_resume_mismatch_is_one_paragraph_naming_the_part(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "last.ckpt", SMOKE_MODEL)
    other = {**SMOKE_MODEL, "backbone": {**SMOKE_MODEL["backbone"], "name": "vit_base", "overrides": {}}}
    with pytest.raises(CheckpointMismatch) as err:
        check_resume_fits(ckpt, other)
    message = str(err.value)
    assert "backbone differs" in message and "vit_tiny vs vit_base" in message and "\n" not in message
    assert "state_dict" not in message and "size mismatch" not in message
    check_resume_fits(ckpt, SMOKE_MODEL)  # the same model fits


def test_eval_refuses_other_skeletons_before_anything_runs(tmp_path, tiny_world):
    from multipose.eval import evaluate

    ckpt = _fake_checkpoint(tmp_path / "last.ckpt", SMOKE_MODEL)
    cfg = run_config(
        tmp_path,
        tiny_world,
        ["data=synthetic_small", f"ckpt_path={ckpt}", "data.datasets.syn_mpii.skeleton=aic"],
        "eval",
    )
    with pytest.raises(
        CheckpointMismatch, match=r"head 'syn_mpii'.*mpii \(16 keypoints\).*aic \(14 keypoints\)"
    ):
        evaluate(cfg)
    assert not (tmp_path / "run" / "results").exists() and not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(CheckpointMismatch, match=r"heads \['syn_coco', 'syn_mpii'\].*\['syn_coco'\]"):
        check_eval_fits(ckpt, compose("eval", ["data=synthetic_small", "~data.datasets.syn_mpii"]).data)


# ----------------------------------------------------------------------------------------------- points 5, 6
def test_config_error_prints_the_message_alone_before_heavy_imports(tmp_path):
    start = time.monotonic()
    proc = run_train_cli(
        ["+experiment=smoke", f"paths.root_dir={tmp_path}", "trainer.devices=512"], timeout=120
    )
    assert proc.returncode == 2
    assert "Error: trainer.devices=512" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.devices=512", "trainer.devices=512 on the CPU"),
        ("paths.data_root=/nonexistent/multipose", r"paths.data_root=/nonexistent/multipose does not exist"),
    ],
)
def test_silent_mistakes_get_a_message(tmp_path, override, message):
    cfg = compose("train", ["+experiment=smoke", f"paths.root_dir={tmp_path}", override])
    with pytest.raises(ConfigError, match=message):
        validate_train_config(cfg)
    assert not Path("/nonexistent/multipose").exists()


def test_gpu_trainer_without_gpu_is_refused_before_data_setup(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from multipose.config_validation import validate_runtime

    with pytest.raises(ConfigError, match="trainer.accelerator=gpu.*trainer=cpu"):
        validate_runtime(compose("train", ["trainer=gpu"]))


def test_experiment_over_group_precedence_is_printed():
    notes = experiment_precedence_notes(["+experiment=smoke", "backbone=vit_base", "trainer.max_epochs=3"])
    assert len(notes) == 1 and notes[0].startswith("backbone=vit_base") and "embed_dim: 64" in notes[0]
    assert experiment_precedence_notes(["backbone=vit_base"]) == []


# ----------------------------------------------------------------------------------------------- point 7
def test_summary_has_one_row_per_dataset():
    from multipose.utils.console import summary_rows

    metrics = {
        "val/a/AP": 0.5,
        "val/a/AP50": 0.9,
        "val/a/cross/b/AP": 0.1,
        "val/b/PCKh@0.5": 0.7,
        "val/score": 0.6,
    }
    assert summary_rows(metrics, {"a": "AP", "b": "PCKh@0.5"}) == [("a", "AP", 0.5), ("b", "PCKh@0.5", 0.7)]


def test_lr_monitor_logs_one_column_per_distinct_rate():
    from multipose.utils.callbacks import LRMonitor

    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(5)]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, [1e-3, 1e-3, 5e-4, 1e-3, 5e-4])]
    groups[2]["name"] = "backbone.blocks.0"
    optimizer = torch.optim.AdamW(groups)

    class T:
        optimizers = [optimizer]

    monitor = LRMonitor()
    monitor.on_train_start(T(), None)
    assert monitor.columns == {"lr/pg0": 0, "lr/backbone.blocks.0": 2}
    single = torch.optim.AdamW([{"params": [p], "lr": 1e-3} for p in params])
    T.optimizers = [single]
    monitor.on_train_start(T(), None)
    assert monitor.columns == {"lr": 0}


# ----------------------------------------------------------------------------------------------- point 8
EXPERIMENTS = sorted(p.stem for p in (REPO / "src/multipose/conf/experiment").glob("*.yaml"))
CALLBACKS = sorted(p.stem for p in (REPO / "src/multipose/conf/callbacks").glob("*.yaml"))
LOGGERS = sorted(p.stem for p in (REPO / "src/multipose/conf/logger").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_every_callbacks_and_logger_option(tmp_path, experiment, monkeypatch):
    """Instantiates the callbacks, loggers and the Trainer (not a run) for each combination; the trainer is
    moved to one CPU process so that GPU experiments can be checked here too."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    from multipose.train import build_trainer

    for callbacks in CALLBACKS:
        for logger in [*LOGGERS, None]:
            chosen = f"logger={logger}" if logger else "~logger"
            cfg = compose(
                "train",
                [f"+experiment={experiment}", f"callbacks={callbacks}", chosen, f"paths.root_dir={tmp_path}"],
            )
            with open_dict(cfg):
                cfg.paths.output_dir = str(tmp_path / "run")
                cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy = "cpu", 1, "auto"
                cfg.trainer.precision = "32"
                cfg.trainer.pop("sync_batchnorm", None)
            trainer, _ = build_trainer(cfg)
            names = {type(cb).__name__ for cb in trainer.callbacks}
            if callbacks != "none":
                assert "RunCheckpoint" in names, (experiment, callbacks, logger)
            assert "ModelCheckpoint" not in names  # Lightning's implicit logger-folder checkpoint
            if cfg.trainer.get("enable_progress_bar", True) is False:
                assert trainer.progress_bar_callback is None
            if "ModelSize" in names:  # its one line replaces Lightning's summary table ("Total FLOPs: 0")
                assert not any("ModelSummary" in n for n in names), (experiment, callbacks, logger)


# ----------------------------------------------------------------------------------------------- point 9
def test_debug_option_wins_over_the_experiment_and_command_line_wins_over_both():
    from multipose.utils.rundir import apply_debug_last

    overrides = ["+experiment=smoke", "debug=overfit"]
    cfg = apply_debug_last(compose("train", overrides), overrides)
    assert cfg.trainer.max_epochs == 20 and cfg.trainer.overfit_batches == 2
    assert list(cfg.logger) == ["csv"] and cfg.validate is False
    assert cfg.trainer.check_val_every_n_epoch > cfg.trainer.max_epochs
    overrides.append("trainer.max_epochs=7")
    assert apply_debug_last(compose("train", overrides), overrides).trainer.max_epochs == 7


def test_browse_writes_under_logs_and_reports_missing_data_plainly(tmp_path, monkeypatch):
    from multipose.data.browse import main
    from multipose.data.config import DataConfigError

    monkeypatch.chdir(tmp_path)
    path = main(["data=synthetic_small", f"paths.root_dir={tmp_path}", "n=2"])
    assert path == tmp_path / "logs" / "browse" / "synthetic_small_train.png" and path.is_file()
    assert not (tmp_path / "browse.png").exists()
    with pytest.raises(DataConfigError, match="missing file") as err:
        main(["data=full_mix", f"paths.data_root={tmp_path}", "n=2"])
    assert "\\n" not in str(err.value)


def test_bare_make_prints_help_and_installs_nothing():
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "pip install" not in dry
    shown = subprocess.run(["make"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "make test" in shown and "make clean-logs" in shown
    clean = subprocess.run(
        ["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "logs" not in clean.replace("clean-logs", "")


def test_config_validation_runs_before_torch_is_imported(tmp_path):
    code = f"""
import sys
from multipose.config_validation import ConfigError
from multipose.train import train
from multipose.utils.compose import compose_config
cfg = compose_config("train", ["+experiment=smoke", "paths.root_dir={tmp_path}", "trainer.devices=512"])
try:
    train(cfg)
except ConfigError:
    print("torch imported:", "torch" in sys.modules, "lightning imported:", "lightning" in sys.modules)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "torch imported: False lightning imported: False" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_images_skipped_under_on_bad_image_skip_are_listed_in_metrics_json(tmp_path, tiny_world):
    """``data.on_bad_image=skip`` never drops data silently: the count and the files are in metrics.json."""
    import json
    import shutil

    from multipose.train import train

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    victim = sorted((world / "syn_coco" / "images" / "val").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated JPEG
    cfg = run_config(tmp_path, world, [*SMOKE, "trainer.max_epochs=1", "data.on_bad_image=skip"])
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data/skipped_images"] == 1.0
    assert (
        len(metrics["data/skipped_image_files"]) == 1
        and victim.name in metrics["data/skipped_image_files"][0]
    )
    assert isinstance(metrics["val/syn_coco/AP"], float)


# ----------------------------------------------------------------------------------------------- weight EMA
def test_ema_callbacks_validate_store_and_serve_the_averaged_weights(tmp_path, tiny_world):
    """`callbacks=ema`: the averaged weights are the checkpoint's state_dict (what eval, predict and init_from
    load); the raw weights stay in current_model_state for resuming."""
    from multipose.models.loading import load_pose_model
    from multipose.train import train

    cfg = run_config(
        tmp_path, tiny_world, [*SMOKE, "trainer.max_epochs=2", "callbacks=ema", "callbacks.ema.decay=0.5"]
    )
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert set(averaged) == set(raw)
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())
    model = load_pose_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    for name, value in model.state_dict().items():
        assert torch.equal(value, averaged["model." + name]), name
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert isinstance(metrics["val/syn_coco/AP"], float)
