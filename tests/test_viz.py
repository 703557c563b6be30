"""The pictures of a run (multipose.viz): learning curves, validation crop grids, the all-heads panel."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import cv2
import hydra
import numpy as np
import pytest
import torch
from omegaconf import open_dict

from conftest import compose
from multipose.inference.draw import COLOURS
from multipose.skeletons import get_skeleton
from multipose.viz import PosePictures, learning_curves, line_chart, pose_tile, tile_grid, unnormalise
from multipose.viz.crops import GT_COLOUR
from multipose.viz.plot import PALETTE, smooth


def _cfg(tmp_path: Path, world: Path, overrides: list[str]):
    """The smoke run with only the ``pictures`` entry of ``callbacks=default`` (as configured there)."""
    cfg = compose(
        "train",
        [
            "+experiment=smoke",
            "callbacks=default",
            *overrides,
            f"paths.root_dir={tmp_path}",
            f"data.root={world}",
        ],
    )
    with open_dict(cfg):
        cfg.callbacks = {"pictures": cfg.callbacks.pictures}
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(tmp_path)
        cfg.print_config = False
    return cfg


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable image"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _has_colour(img: np.ndarray, colour, tol: int = 12) -> int:
    return int((np.abs(img.astype(int) - np.array(colour)).max(-1) <= tol).sum())


def test_run_writes_curves_and_crop_grids(tmp_path, tiny_world, monkeypatch):
    import multipose.train as train_mod

    seen = {}
    draw = PosePictures.draw

    def spy(self, trainer, pl_module):  # keep the callback and trainer to look at them afterwards
        seen.update(cb=self, trainer=trainer, module=pl_module)
        return draw(self, trainer, pl_module)

    monkeypatch.setattr(PosePictures, "draw", spy)
    train_mod.train(_cfg(tmp_path, tiny_world, ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1"]))
    cb = seen["cb"]
    pics = tmp_path / "run" / "pictures"
    names = ["syn_coco", "syn_mpii"]
    assert sorted(p.name for p in pics.iterdir()) == sorted(
        ["learning_curves.png", "all_heads.png", *(f"val_{n}.png" for n in names)]
    )

    # learning curves: both datasets' losses recorded per logged step, one metric point per validation
    steps = seen["trainer"].global_step  # the smoke run logs every step
    assert set(cb.losses) == set(names)
    assert all([p[0] for p in v] == list(range(1, steps + 1)) for v in cb.losses.values())
    assert all(len({p[1] for p in v}) == steps for v in cb.losses.values())  # fresh values, not one repeated
    assert set(cb.metrics) == set(names)
    assert all(len(v) >= 2 for v in cb.metrics.values())  # a validation per epoch
    curves = _read(pics / "learning_curves.png")
    assert curves.shape == (320, 960, 3)
    for side in (curves[:, :480], curves[:, 480:]):
        assert _has_colour(side, PALETTE[0]) > 20 and _has_colour(side, PALETTE[1]) > 20

    # crop grids: the first 8 validation crops of each loader, skeletons drawn over them
    h, w = seen["trainer"].datamodule.input_size
    zoom = max(1, round(192 / h))
    for name in names:
        crops = cb._crops[name]
        n = crops["image"].shape[0]
        assert n == min(8, len(seen["trainer"].datamodule.val_datasets[names.index(name)]))
        grid = _read(pics / f"val_{name}.png")
        cols = min(4, n)
        rows = -(-n // cols)
        assert grid.shape == (rows * (h * zoom + 2) - 2, cols * (w * zoom + 2) - 2, 3)
        raw = tile_grid(
            [
                cv2.resize(unnormalise(im), (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)
                for im in crops["image"]
            ],
            cols,
        )
        changed = np.abs(grid.astype(int) - raw.astype(int)).max(-1) > 30
        assert changed.mean() > 0.01, "no skeleton drawn over the crops"
        assert _has_colour(grid, GT_COLOUR, 4) > 50  # ground truth in grey
        assert sum(_has_colour(grid, COLOURS[s], 4) for s in ("left", "right", "centre")) > 20  # prediction
    # the drawn predictions are those validation scored (handed over by validation_step, not recomputed)
    predictor = seen["module"].predictor
    predictor.model.eval()
    for name in names:
        assert name in cb._preds[name], "validation_step's predictions were not kept"
        crops = cb._crops[name]
        again = predictor.predict(crops["image"], crops["center"], crops["scale"], [name], True)[name]
        np.testing.assert_allclose(cb._preds[name][name], again.keypoints, rtol=1e-4, atol=1e-3)
    panel = _read(pics / "all_heads.png")
    assert panel.shape == (h * zoom, 2 * w * zoom + 2, 3)  # one crop, a panel per head


def test_plotting_error_does_not_stop_the_run(tmp_path, tiny_world, monkeypatch, caplog):
    import multipose.train as train_mod
    import multipose.viz.callback as cb_mod

    def broken(*args, **kwargs):
        raise RuntimeError("plotting exploded")

    monkeypatch.setattr(cb_mod, "learning_curves", broken)
    with caplog.at_level(logging.WARNING):
        metrics = train_mod.train(_cfg(tmp_path, tiny_world, ["+trainer.fast_dev_run=true"]))
    assert "val/score" in metrics
    assert any("PosePictures" in r.getMessage() and r.exc_info for r in caplog.records)
    assert "plotting exploded" in caplog.text
    assert not (tmp_path / "run" / "pictures" / "learning_curves.png").exists()


def _fake_trainer(tmp_path: Path, rank_zero: bool):
    return SimpleNamespace(
        is_global_zero=rank_zero,
        sanity_checking=False,
        global_step=3,
        log_every_n_steps=1,
        callback_metrics={"train/syn_a/loss": torch.tensor(0.5), "train/loss": torch.tensor(0.5)},
        default_root_dir=str(tmp_path),
        loggers=[],
        datamodule=None,
    )


def test_only_rank_zero_records_and_writes(tmp_path):
    batch = {"image": torch.zeros(2, 3, 8, 6)}
    module = SimpleNamespace(predictor=None, val_metrics={})
    for rank_zero in (False, True):
        cb = PosePictures()
        trainer = _fake_trainer(tmp_path / str(rank_zero), rank_zero)
        cb.on_train_batch_end(trainer, module, None, batch, 0)
        cb.on_validation_batch_end(trainer, module, None, batch, 0)
        cb.on_validation_end(trainer, module)
        written = tmp_path / str(rank_zero) / "pictures" / "learning_curves.png"
        assert written.exists() == rank_zero
        assert cb.losses == ({"syn_a": [(3, 0.5)]} if rank_zero else {})


def test_draws_without_predictions_from_validation_step(tmp_path, tiny_world):
    """A module whose validation_step returns nothing: the callback runs the predictor on its crops itself."""
    from multipose.inference import MixSpec, Predictor
    from multipose.models.build import model_from_config
    from multipose.models.model_config import model_config_from_hydra

    cfg = _cfg(tmp_path, tiny_world, [])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("validate")
    model = model_from_config(model_config_from_hydra(cfg, dm).to_dict()).eval()
    predictor = Predictor(model, MixSpec.from_dict(dm.describe()), flip_test=True)
    module = SimpleNamespace(predictor=predictor, val_metrics={"val/syn_coco/AP": 0.5})
    trainer = _fake_trainer(tmp_path, True)
    trainer.datamodule = dm
    cb = PosePictures(num_crops=3)
    cb.on_validation_epoch_start(trainer, module)
    for d, loader in enumerate(dm.val_dataloader()):
        cb.on_validation_batch_end(trainer, module, None, next(iter(loader)), 0, d)
    assert cb._preds == {"syn_coco": {}, "syn_mpii": {}}
    paths = cb.draw(trainer, module)
    assert set(paths) == {"learning_curves", "val_syn_coco", "val_syn_mpii", "all_heads"}
    assert cb.metrics == {"syn_coco": [(3, 0.5)]}
    grid = _read(paths["val_syn_coco"])
    assert sum(_has_colour(grid, COLOURS[s], 4) for s in ("left", "right", "centre")) > 20


def test_a_loss_not_logged_again_is_not_recorded_again(tmp_path):
    cb = PosePictures()
    trainer = _fake_trainer(tmp_path, True)
    cb.on_train_batch_end(trainer, None, None, {}, 0)
    trainer.global_step = 4  # syn_a had no samples in this batch: Lightning keeps its last value object
    cb.on_train_batch_end(trainer, None, None, {}, 0)
    trainer.global_step = 5
    trainer.callback_metrics = {"train/syn_a/loss": torch.tensor(0.25)}
    cb.on_train_batch_end(trainer, None, None, {}, 0)
    cb._flush()
    assert cb.losses == {"syn_a": [(3, 0.5), (5, 0.25)]}


def test_losses_follow_the_logging_steps_and_reach_the_validation(tmp_path):
    cb = PosePictures()
    trainer = _fake_trainer(tmp_path, True)
    trainer.log_every_n_steps = 10
    module = SimpleNamespace(predictor=None, val_metrics={})
    for step in (1, 2, 3, 10, 13):
        trainer.global_step = step
        trainer.callback_metrics = {"train/syn_a/loss": torch.tensor(float(step))}
        cb.on_train_batch_end(trainer, module, None, {}, 0)
    cb.on_validation_end(trainer, module)  # validation after step 13: its loss is drawn too
    assert [p[0] for p in cb.losses["syn_a"]] == [1, 10, 13]


def test_state_dict_keeps_the_curves(tmp_path):
    cb = PosePictures()
    trainer = _fake_trainer(tmp_path, True)
    cb.on_train_batch_end(trainer, None, None, {}, 0)
    cb.metrics["syn_a"] = [(3, 0.25)]
    restored = PosePictures()
    restored.load_state_dict(cb.state_dict())
    assert restored.losses == {"syn_a": [(3, 0.5)]} and restored.metrics == {"syn_a": [(3, 0.25)]}


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="num_crops"):
        PosePictures(num_crops=0)
    with pytest.raises(ValueError, match="smoothing"):
        PosePictures(smoothing=1.0)


def test_pose_tile_draws_prediction_over_muted_ground_truth():
    sk = get_skeleton("coco")
    crop = np.full((64, 48, 3), 40, np.uint8)
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(5, 40, (sk.num_keypoints, 2)), np.full((sk.num_keypoints, 1), 2)], 1)
    pred = gt.copy()
    pred[:, :2] += 3.0
    plain = pose_tile(crop, sk, None, None, zoom=2)
    assert plain.shape == (128, 96, 3) and (plain == 40).all()
    only_gt = pose_tile(crop, sk, None, gt, zoom=2)
    assert _has_colour(only_gt, GT_COLOUR, 2) > 30
    assert sum(_has_colour(only_gt, COLOURS[s], 2) for s in ("left", "right", "centre")) == 0
    both = pose_tile(crop, sk, pred, gt, "title", zoom=2)
    assert _has_colour(both, COLOURS["left"], 2) > 10 and _has_colour(both, COLOURS["right"], 2) > 10
    low = pred.copy()
    low[:, 2] = 0.05
    assert (pose_tile(crop, sk, low, None, zoom=2, min_score=0.1) == 40).all()  # low scores hidden


def test_line_chart_and_learning_curves():
    x = np.arange(10)
    img = line_chart({"a": (x, np.exp(-x / 3.0)), "b": (x, np.full(10, 0.2))}, "t", (200, 300), log_y=True)
    assert img.shape == (200, 300, 3)
    assert _has_colour(img, PALETTE[0]) > 20 and _has_colour(img, PALETTE[1]) > 20
    empty = line_chart({}, "t", (200, 300))
    assert empty.shape == (200, 300, 3) and _has_colour(empty, PALETTE[0]) == 0
    # non-positive values are skipped on a log axis instead of failing
    skipped = line_chart({"a": (x, np.linspace(-1, 1, 10))}, "t", (200, 300), log_y=True)
    assert _has_colour(skipped, PALETTE[0]) > 0
    both = learning_curves({"a": (x, x + 1.0)}, {"a": (np.array([9]), np.array([0.5]))}, {"a": "AP"})
    assert both.shape == (320, 960, 3)
    assert _has_colour(both[:, 480:], PALETTE[0]) > 10  # the single metric point is drawn


def test_smooth():
    y = np.array([1.0, 3.0, 2.0, 5.0])
    assert np.allclose(smooth(y, 0.0), y)
    assert np.allclose(smooth(np.full(5, 2.0), 0.9), 2.0)  # bias-corrected: no ramp from zero
    s = smooth(y, 0.5)
    assert s[0] == 1.0 and np.ptp(s) < np.ptp(y)


def test_tensorboard_receives_the_images(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb")
    trainer = SimpleNamespace(loggers=[logger])
    cb = PosePictures()
    cb._log_images(trainer, {"learning_curves": np.full((20, 30, 3), 128, np.uint8)}, step=1)
    logger.experiment.flush()
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 200
    assert not cb._failed
