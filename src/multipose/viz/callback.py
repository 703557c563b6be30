"""``PosePictures``: the pictures of a run, redrawn after every validation (``conf/callbacks/default.yaml``).

Files (in ``dirpath``, default ``<trainer.default_root_dir>/pictures``, written atomically):

* ``learning_curves.png`` — training loss per dataset (``train/<dataset>/loss``, log scale, smoothed) beside the
  validation metric of each dataset (its primary metric: AP, PCKh@0.5, ...), over the global step;
* ``val_<dataset>.png`` — the first ``num_crops`` crops of the dataset's validation loader (a fixed,
  deterministic set) with the prediction of the dataset's own head (flip-averaged, as validation scores it,
  side-coloured) over the ground truth (grey);
* ``<bridge>_<name>.png`` — figures of the bridges that define ``figures(lit, batch)``
  (:mod:`multipose.viz.figures`; e.g. PoseBH's prototype similarity maps);
* ``all_heads.png`` — on the synthetic world (instances with hidden ground truth of every skeleton,
  ``Instance.extra_gt``): one crop, a panel per head with that head's prediction over its skeleton's hidden
  ground truth.

The same images go to TensorBoard (``add_image``) and W&B (``log_image``) when those loggers are on. The history
of the curves is kept by the callback itself (and in its checkpoint state, so a resumed run keeps its curves):
Lightning's CSV logger flushes ``metrics.csv`` only every ``flush_logs_every_n_steps`` and is not always on.

The predictions drawn are the ones validation scored: ``validation_step`` returns its ``{head: HeadPrediction}``
and the callback keeps those of the first crops (heads validation did not run on those crops, e.g. for the
all-heads panel without cross-skeleton scoring, are run on that one crop only). With a module whose
``validation_step`` returns nothing, the callback runs its ``predictor`` on the kept crops itself.

Runs on global rank 0 only (no collective calls, so the other ranks never wait for it) and never stops a run: an
error while drawing is logged and training goes on.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch

from multipose.viz.crops import pose_tile, tile_grid, unnormalise
from multipose.viz.figures import bridge_figures, figures_batch
from multipose.viz.plot import learning_curves

__all__ = ["PosePictures", "write_png_atomic"]

log = logging.getLogger(__name__)

_BATCH_KEYS = ("image", "keypoints", "center", "scale", "rotation", "image_id", "ann_id")


def write_png_atomic(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB ``uint8 [H, W, 3]`` image as PNG through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.tobytes())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a picture is an ordinary readable file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class PosePictures(L.Callback):
    """Args:
    dirpath: folder of the PNGs; default ``<trainer.default_root_dir>/pictures``.
    num_crops: validation crops per dataset in ``val_<dataset>.png`` (the first ones of its loader).
    cols: columns of the crop grids (default: about square).
    zoom: enlargement of the crops (default: crops about 192 px high).
    smoothing: EMA factor of the drawn training loss (0 = raw).
    log_images: also send the images to the TensorBoard / W&B loggers of the trainer.
    all_heads: draw ``all_heads.png`` when the validation instances carry every skeleton's ground truth.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        num_crops: int = 8,
        cols: int | None = None,
        zoom: int | None = None,
        smoothing: float = 0.9,
        log_images: bool = True,
        all_heads: bool = True,
    ) -> None:
        if num_crops < 1:
            raise ValueError(f"callbacks.pictures.num_crops must be >= 1, got {num_crops}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"callbacks.pictures.smoothing must be in [0, 1), got {smoothing}")
        self.dirpath = dirpath
        self.num_crops = int(num_crops)
        self.cols = cols
        self.zoom = zoom
        self.smoothing = float(smoothing)
        self.log_images = bool(log_images)
        self.all_heads = bool(all_heads)
        self.losses: dict[str, list[tuple[int, float]]] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        # loss tensors recorded but not yet read (one device sync per validation, not one per step)
        self._pending: list[tuple[int, str, torch.Tensor]] = []
        self._seen: dict[str, Any] = {}  # the last recorded tensor per key
        self._crops: dict[str, dict[str, torch.Tensor]] = {}  # this validation's first crops per dataset
        self._preds: dict[str, dict[str, np.ndarray]] = {}  # their keypoints [n, K, 3] (image px) per head
        self._failed = False

    # ------------------------------------------------------------------ state (curves survive a resume)
    def state_dict(self) -> dict[str, Any]:
        self._flush()
        return {"losses": self.losses, "metrics": self.metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = {k: [tuple(p) for p in v] for k, v in state_dict.get("losses", {}).items()}
        self.metrics = {k: [tuple(p) for p in v] for k, v in state_dict.get("metrics", {}).items()}

    # ------------------------------------------------------------------ hooks
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        step = int(trainer.global_step)
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        if step % every and step != 1:  # the logging steps, and the first one so that a curve starts at 1
            return
        try:
            self._record_losses(trainer)
        except Exception:  # noqa: BLE001 - pictures never stop a run
            self._report("recording the training loss")

    def _record_losses(self, trainer: L.Trainer) -> None:
        step = int(trainer.global_step)
        for key, value in trainer.callback_metrics.items():
            parts = key.split("/")
            # a dataset absent from this batch keeps its last value (the same tensor object): skip it
            if (
                len(parts) == 3
                and parts[0] == "train"
                and parts[2] == "loss"
                and value is not self._seen.get(key)
            ):
                self._seen[key] = value
                self._pending.append((step, parts[1], torch.as_tensor(value).detach().clone()))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._crops, self._preds = {}, {}

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        try:
            names = _mix_names(pl_module)
            if names is None or dataloader_idx >= len(names):
                return
            name = names[dataloader_idx]
            have = self._crops.get(name)
            n_have = 0 if have is None else int(have["image"].shape[0])
            k = min(self.num_crops - n_have, int(batch["image"].shape[0]))
            if k <= 0:
                return
            take = {key: batch[key][:k].detach().cpu().clone() for key in _BATCH_KEYS if key in batch}
            preds = {
                head: np.asarray(p.keypoints)[:k].copy()
                for head, p in (outputs.items() if isinstance(outputs, dict) else ())
                if hasattr(p, "keypoints")
            }
            if name not in preds:  # the module did not hand its predictions over: draw without reuse
                preds = {}
            if have is None:
                self._crops[name], self._preds[name] = take, preds
            else:
                self._crops[name] = {key: torch.cat([have[key], take[key]]) for key in take}
                old = self._preds.get(name, {})
                self._preds[name] = {h: np.concatenate([old[h], v]) for h, v in preds.items() if h in old}
        except Exception:  # noqa: BLE001
            self._report("keeping the validation crops")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        try:
            self.draw(trainer, pl_module)
        except Exception:  # noqa: BLE001
            self._report("drawing the pictures")

    # ------------------------------------------------------------------ drawing
    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Path]:
        """Record this validation's metrics and (re)write every picture; returns ``{stem: path}``."""
        start = time.perf_counter()
        out_dir = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "pictures"
        step = int(trainer.global_step)
        self._record_losses(trainer)  # the last training step before this validation, if not logged yet
        self._flush()
        predictor = getattr(pl_module, "predictor", None)
        mix = getattr(predictor, "mix", None)
        primary = _primary_metrics(mix) if mix is not None else {}
        metrics = dict(getattr(pl_module, "val_metrics", None) or trainer.callback_metrics)
        for name, metric in primary.items():
            value = metrics.get(f"val/{name}/{metric}")
            if value is not None:
                series = self.metrics.setdefault(name, [])
                if series and series[-1][0] == step:  # e.g. the final validate() of the same weights
                    series.pop()
                series.append((step, float(value)))
        images = {"learning_curves": self._curves(primary)}
        if predictor is not None and predictor.model is not None:
            images.update(self._crop_grids(predictor))
            if self.all_heads:
                panel = self._all_heads(trainer, predictor)
                if panel is not None:
                    images["all_heads"] = panel
            # bridges that define figures(lit, batch) (multipose.viz.figures): pictures/<bridge>_<name>.png
            images.update(bridge_figures(pl_module, figures_batch(self._crops, list(mix.names))))
        paths = {stem: write_png_atomic(out_dir / f"{stem}.png", img) for stem, img in images.items()}
        if self.log_images:
            self._log_images(trainer, images, step)
        log.info("pictures of step %d in %s (%.0f ms)", step, out_dir, 1000 * (time.perf_counter() - start))
        return paths

    def _curves(self, primary: dict[str, str]) -> np.ndarray:
        def arrays(d: dict[str, list[tuple[int, float]]]):
            return {k: (np.array([p[0] for p in v]), np.array([p[1] for p in v])) for k, v in d.items() if v}

        return learning_curves(arrays(self.losses), arrays(self.metrics), primary, self.smoothing)

    def _predictions(
        self, predictor: Any, name: str, heads: list[str], index: slice
    ) -> dict[str, np.ndarray]:
        """Keypoints ``[n, K, 3]`` in image pixels of ``heads`` on ``name``'s kept crops ``index``: those
        validation computed, the others predicted now (on these crops only)."""
        crops = self._crops[name]
        kept = self._preds.get(name, {})
        out = {h: kept[h][index] for h in heads if h in kept and kept[h].shape[0] == crops["image"].shape[0]}
        missing = [h for h in heads if h not in out]
        if missing:
            images = crops["image"][index].to(_device(predictor.model))
            center, scale = crops["center"][index], crops["scale"][index]
            use_udp = predictor.mix.dataset(name).use_udp
            ran = predictor.predict(images, center, scale, missing, use_udp)
            out.update({h: p.keypoints for h, p in ran.items()})
        return out

    def _to_crop(self, mix: Any, name: str, points: np.ndarray, index: slice) -> np.ndarray:
        """Image-pixel points ``[n, K, 2+]`` of ``name``'s kept crops -> input-crop pixels (extra columns kept)."""
        from multipose.data.geometry import get_warp_matrix, warp_points

        crops = self._crops[name]
        matrix = get_warp_matrix(
            crops["center"][index].numpy(),
            crops["scale"][index].numpy(),
            crops["rotation"][index].numpy(),
            mix.input_size,
            mix.dataset(name).use_udp,
        )
        out = np.array(points, dtype=np.float32, copy=True)
        out[..., :2] = warp_points(out[..., :2], matrix)
        return out

    def _crop_grids(self, predictor: Any) -> dict[str, np.ndarray]:
        mix = predictor.mix
        out = {}
        zoom = self._zoom(mix.input_size)
        for name, crops in self._crops.items():
            if name not in mix.names:
                continue
            every = slice(None)
            skeleton = mix.skeletons[name]
            k = skeleton.num_keypoints
            pred = self._to_crop(mix, name, self._predictions(predictor, name, [name], every)[name], every)
            gt = self._to_crop(mix, name, crops["keypoints"][:, :k].numpy(), every)
            tiles = [
                pose_tile(unnormalise(crops["image"][i]), skeleton, pred[i], gt[i], name, zoom)
                for i in range(crops["image"].shape[0])
            ]
            out[f"val_{name}"] = tile_grid(tiles, self.cols or min(4, len(tiles)))
        return out

    def _all_heads(self, trainer: L.Trainer, predictor: Any) -> np.ndarray | None:
        """One crop with every head's prediction (a panel per head) over that skeleton's hidden ground truth."""
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "val_instances"):
            return None
        mix = predictor.mix
        zoom = self._zoom(mix.input_size)
        for name, crops in self._crops.items():
            if name not in mix.names:
                continue
            by_id = {(int(r.image_id), int(r.ann_id)): r for r in dm.val_instances(name)}
            for i in range(crops["image"].shape[0]):
                record = by_id.get((int(crops["image_id"][i]), int(crops["ann_id"][i])))
                if record is None or not record.extra_gt:
                    continue
                one = slice(i, i + 1)
                preds = self._predictions(predictor, name, mix.names, one)
                crop = unnormalise(crops["image"][i])
                tiles = []
                for head in mix.names:
                    pred = self._to_crop(mix, name, preds[head], one)[0]
                    hidden = record.extra_gt.get(mix.dataset(head).skeleton)
                    gt = (
                        None if hidden is None else self._to_crop(mix, name, np.asarray(hidden)[None], one)[0]
                    )
                    tiles.append(pose_tile(crop, mix.skeletons[head], pred, gt, f"{head} head", zoom))
                return tile_grid(tiles, self.cols or min(5, len(tiles)))
        return None

    def _zoom(self, input_size: Any) -> int:
        return int(self.zoom or max(1, round(192 / int(input_size[0]))))

    def _log_images(self, trainer: L.Trainer, images: dict[str, np.ndarray], step: int) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        for logger in trainer.loggers:
            try:
                if isinstance(logger, TensorBoardLogger):
                    for stem, img in images.items():
                        logger.experiment.add_image(f"pictures/{stem}", img, step, dataformats="HWC")
                elif isinstance(logger, WandbLogger):
                    for stem, img in images.items():
                        logger.log_image(key=f"pictures/{stem}", images=[img], step=step)
            except Exception:  # noqa: BLE001
                self._report(f"sending the pictures to {type(logger).__name__}")

    # ------------------------------------------------------------------ helpers
    def _flush(self) -> None:
        """Turn the recorded loss tensors into floats (one device sync per validation, not per step)."""
        if not self._pending:
            return
        values = torch.stack([v.float().reshape(()) for _, _, v in self._pending]).cpu().tolist()
        for (step, name, _), value in zip(self._pending, values):
            series = self.losses.setdefault(name, [])
            if not series or series[-1][0] != step:
                series.append((step, float(value)))
        self._pending = []

    def _report(self, what: str) -> None:
        if not self._failed:
            log.exception("PosePictures: %s failed; the run goes on without pictures", what)
            self._failed = True
        else:
            log.warning("PosePictures: %s failed again", what)


def _mix_names(pl_module: Any) -> list[str] | None:
    predictor = getattr(pl_module, "predictor", None)
    return None if predictor is None else list(predictor.mix.names)


def _primary_metrics(mix: Any) -> dict[str, str]:
    from multipose.evaluation.mix import PRIMARY_METRIC

    return {d.name: PRIMARY_METRIC[d.metric] for d in mix.datasets if d.metric in PRIMARY_METRIC}


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
