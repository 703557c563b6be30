"""Validation crops with the predicted skeleton drawn over the ground truth, and grids of such tiles.

Prediction: side-coloured links and joints (left = blue, right = orange, centre = green, as the browse tool and
``multipose.predict --draw``). Ground truth: thin grey links and hollow grey joints underneath, so the distance
between the two is what the eye sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from multipose.inference.draw import COLOURS, draw_pose

__all__ = ["GT_COLOUR", "banner", "pose_tile", "tile_grid", "unnormalise"]

#: RGB colour of the ground truth (muted, under the prediction).
GT_COLOUR = (170, 170, 170)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def unnormalise(image: Any) -> np.ndarray:
    """``[3, H, W]`` ImageNet-normalised float (numpy or torch) -> ``uint8 [H, W, 3]`` RGB."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    return np.clip(arr * _STD + _MEAN, 0, 255).astype(np.uint8)


def banner(tile: np.ndarray, text: str, scale: float = 0.4) -> np.ndarray:
    """Write ``text`` in white on a black band at the top left of ``tile`` (in place)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(tile, (0, 0), (min(tile.shape[1] - 1, tw + 4), th + base + 3), COLOURS["banner"], -1)
    cv2.putText(tile, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, COLOURS["text"], 1, cv2.LINE_AA)
    return tile


def pose_tile(
    crop: np.ndarray,
    skeleton: Any,
    prediction: np.ndarray | None,
    ground_truth: np.ndarray | None = None,
    title: str = "",
    zoom: int = 2,
    min_score: float = 0.0,
) -> np.ndarray:
    """One tile ``uint8 [H*zoom, W*zoom, 3]``: ``crop`` (``uint8 [H, W, 3]`` RGB) enlarged, the ground truth
    ``[K, 3]`` (crop pixels, joints with ``v > 0``) in grey, the prediction ``[K, 2+]`` (crop pixels; joints
    with score ``>= min_score`` when a third column is given) side-coloured on top, and ``title``."""
    h, w = crop.shape[:2]
    tile = cv2.resize(np.ascontiguousarray(crop), (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)

    def px(p: np.ndarray) -> tuple[int, int]:  # crop pixel centre -> tile pixel
        return int(round((p[0] + 0.5) * zoom - 0.5)), int(round((p[1] + 0.5) * zoom - 0.5))

    k = skeleton.num_keypoints
    if ground_truth is not None:
        gt = np.asarray(ground_truth, np.float32)[:k]
        vis = gt[:, 2] > 0
        for a, b in skeleton.links:
            if vis[a] and vis[b]:
                cv2.line(tile, px(gt[a]), px(gt[b]), GT_COLOUR, 1, cv2.LINE_AA)
        for j in np.flatnonzero(vis):
            cv2.circle(tile, px(gt[j]), max(2, zoom + 1), GT_COLOUR, 1, cv2.LINE_AA)
    if prediction is not None:
        pred = np.asarray(prediction, np.float32)[:k]
        shown = pred[:, 2] >= min_score if pred.shape[1] > 2 else None
        draw_pose(tile, pred, skeleton, shown, thickness=max(1, zoom // 2), radius=max(2, zoom), to_pixel=px)
    if title:
        banner(tile, title, 0.35 * max(1.0, zoom / 1.5))
    return tile


def tile_grid(tiles: Sequence[np.ndarray], cols: int | None = None, gap: int = 2) -> np.ndarray:
    """Tiles of equal size in a grid (row-major, white gaps), ``cols`` default ``ceil(sqrt(n))``."""
    if not tiles:
        raise ValueError("tile_grid needs at least one tile")
    cols = max(1, min(cols or int(math.ceil(math.sqrt(len(tiles)))), len(tiles)))
    rows = int(math.ceil(len(tiles) / cols))
    th, tw = tiles[0].shape[:2]
    grid = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for j, tile in enumerate(tiles):
        r, c = divmod(j, cols)
        grid[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return grid
