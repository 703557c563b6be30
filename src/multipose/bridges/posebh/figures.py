"""Dashboard images of PoseBH, drawn with OpenCV/numpy (the project has no matplotlib): prototype similarity maps
of a few crops, and a 2-D map of the prototypes coloured by semantic tag (PCA; a t-SNE of
:meth:`PoseBHBridge.prototype_table` gives the paper's picture where scikit-learn is installed). Every function
returns an RGB ``uint8`` image ``[H, W, 3]`` (``wandb.Image`` / PNG ready)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

__all__ = ["similarity_image", "prototype_image", "project_2d"]

CELL = 96  # pixels per panel side


def _panel(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(x, size, interpolation=cv2.INTER_NEAREST)


def similarity_image(
    images: Tensor, maps: Tensor, rows: Sequence[slice], names: Sequence[str], per_crop: int = 4
) -> np.ndarray:
    """One row per crop: the crop, then the ``per_crop`` strongest prototype maps of its own skeleton (viridis,
    0..1), each labelled with its keypoint index."""
    out_rows = []
    for i in range(images.shape[0]):
        img = images[i].detach().float().cpu().permute(1, 2, 0).numpy()
        img = ((img - img.min()) / max(float(img.max() - img.min()), 1e-6) * 255).astype(np.uint8)
        h = CELL
        w = max(1, round(CELL * img.shape[1] / img.shape[0]))
        cells = [_panel(img, (w, h))]
        cv2.putText(cells[0], names[i][:12], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
        own = maps[i, rows[i]].detach().float().cpu().numpy()
        for k in np.argsort(-own.reshape(own.shape[0], -1).max(1))[:per_crop]:
            col = cv2.applyColorMap((np.clip(own[k], 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
            cell = _panel(cv2.cvtColor(col, cv2.COLOR_BGR2RGB), (w, h))
            cv2.putText(cell, f"kpt {int(k)}", (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
            cells.append(cell)
        while len(cells) < per_crop + 1:
            cells.append(np.zeros_like(cells[0]))
        out_rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(out_rows, axis=0)


def project_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of the rows of ``x``."""
    c = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T


def _colour(i: int, n: int) -> tuple[int, int, int]:
    hsv = np.uint8([[[int(180 * i / max(n, 1)), 200, 230]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def prototype_image(
    prototypes: np.ndarray, tags: Sequence[str], owners: Sequence[str], size: int = 480
) -> np.ndarray:
    """Scatter of the prototypes (PCA) coloured by semantic tag; the marker (circle, square, triangle, ...) says the
    dataset; a legend of the datasets' markers in the corner."""
    xy = project_2d(prototypes.astype(np.float64))
    lo, hi = xy.min(0), xy.max(0)
    pts = ((xy - lo) / np.maximum(hi - lo, 1e-9) * (size - 40) + 20).astype(int)
    canvas = np.full((size, size, 3), 255, np.uint8)
    uniq = sorted(set(tags))
    colour = {t: _colour(i, len(uniq)) for i, t in enumerate(uniq)}
    datasets = list(dict.fromkeys(owners))
    for (x, y), tag, ds in zip(pts, tags, owners):
        shape, c = datasets.index(ds) % 3, colour[tag]
        if shape == 0:
            cv2.circle(canvas, (int(x), int(y)), 3, c, -1)
        elif shape == 1:
            cv2.rectangle(canvas, (int(x) - 3, int(y) - 3), (int(x) + 3, int(y) + 3), c, -1)
        else:
            tri = np.array([[x, y - 4], [x - 4, y + 3], [x + 4, y + 3]], np.int32)
            cv2.fillPoly(canvas, [tri], c)
    for i, ds in enumerate(datasets):
        marker = ["o", "[]", "^"][i % 3]
        cv2.putText(canvas, f"{marker} {ds}", (4, 12 + 12 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    return canvas
