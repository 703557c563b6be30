"""Figures from the training-time bridges (``multipose.bridges``) for the run's pictures and the loggers.

A bridge that has something to show defines ``figures(lit, batch) -> {name: figure}``: ``batch`` is a small
validation batch (the first crops of each dataset that ``PosePictures`` keeps: ``image``, ``dataset_idx``,
``center``, ``scale``, ``rotation``, ``image_id``, ``ann_id``, and ``keypoints`` when every dataset's have the
same width) on the module's device; the call runs under ``torch.no_grad()`` with the module in eval mode. A figure
is a matplotlib ``Figure`` or an RGB ``uint8 [H, W, 3]`` array. ``PosePictures`` writes each one as
``pictures/<bridge>_<name>.png`` (a ``<bridge>/`` prefix of the name is dropped, ``/`` becomes ``_``) and sends it to TensorBoard / W&B as ``pictures/<bridge>_<name>``; the offline
sweep report shows it with the other pictures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["bridge_figures", "figure_stem", "figure_to_rgb", "figures_batch"]

log = logging.getLogger(__name__)

_KEYS = ("image", "center", "scale", "rotation", "image_id", "ann_id")


def figure_to_rgb(figure: Any) -> np.ndarray:
    """A matplotlib ``Figure`` (closed afterwards) or an image array -> RGB ``uint8 [H, W, 3]``."""
    if hasattr(figure, "canvas"):  # matplotlib, without importing it here
        figure.canvas.draw()
        rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
        try:
            import matplotlib.pyplot as plt

            plt.close(figure)
        except ImportError:  # pragma: no cover - a Figure without pyplot
            pass
        return rgb
    arr = np.asarray(figure)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(
            f"a bridge figure must be a matplotlib Figure or an [H, W, 3] image, got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        arr = np.clip(arr.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def figures_batch(
    crops: Mapping[str, Mapping[str, torch.Tensor]], names: list[str], per_dataset: int = 2
) -> dict[str, torch.Tensor] | None:
    """One batch of the first ``per_dataset`` kept crops of every dataset (``crops``: dataset -> batch keys),
    with ``dataset_idx`` in mix order ``names``; ``None`` without crops."""
    parts = [(names.index(n), c) for n, c in crops.items() if n in names and c["image"].shape[0] > 0]
    if not parts:
        return None
    batch: dict[str, torch.Tensor] = {}
    for key in _KEYS:
        if all(key in c for _, c in parts):
            batch[key] = torch.cat([c[key][:per_dataset] for _, c in parts])
    widths = {tuple(c["keypoints"].shape[1:]) for _, c in parts if "keypoints" in c}
    if len(widths) == 1 and all("keypoints" in c for _, c in parts):
        batch["keypoints"] = torch.cat([c["keypoints"][:per_dataset] for _, c in parts])
    batch["dataset_idx"] = torch.cat(
        [torch.full((min(per_dataset, c["image"].shape[0]),), i, dtype=torch.long) for i, c in parts]
    )
    return batch


def figure_stem(bridge: str, key: str) -> str:
    """File stem / logger key of a bridge figure: ``<bridge>_<key>`` with a leading ``<bridge>/`` or
    ``<bridge>_`` of ``key`` dropped and ``/`` made ``_`` (``posebh/similarity`` -> ``posebh_similarity``)."""
    key = str(key)
    for prefix in (f"{bridge}/", f"{bridge}_"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return f"{bridge}_{key.replace('/', '_')}"


def bridge_figures(pl_module: Any, batch: Mapping[str, torch.Tensor] | None) -> dict[str, np.ndarray]:
    """``{"<bridge>_<name>": RGB image}`` of every bridge of ``pl_module`` that defines ``figures``. A bridge
    whose figures fail is logged and left out."""
    bridges = getattr(pl_module, "bridges", None)
    if not bridges or batch is None:
        return {}
    device = next((p.device for p in pl_module.parameters()), torch.device("cpu"))
    batch = {k: v.to(device) for k, v in batch.items()}
    out: dict[str, np.ndarray] = {}
    was_training = pl_module.training
    pl_module.eval()
    try:
        for name, bridge in bridges.items():
            make = getattr(bridge, "figures", None)
            if make is None:
                continue
            try:
                with torch.no_grad():
                    figures = make(pl_module, batch) or {}
                for key, figure in figures.items():
                    out[figure_stem(name, key)] = figure_to_rgb(figure)
            except Exception:  # noqa: BLE001 - pictures never stop a run
                log.exception("bridge %s: figures failed; the run goes on without them", name)
    finally:
        pl_module.train(was_training)
    return out
