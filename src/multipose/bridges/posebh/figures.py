"""Dashboard images of PoseBH, drawn with OpenCV/numpy (the project has no matplotlib): prototype similarity maps
of a few crops, and a 2-D map of the prototypes coloured by semantic tag, as in the paper's figure (t-SNE by
default, :mod:`multipose.viz.tsne`; PCA as a fast linear alternative). Every function returns an RGB ``uint8``
image ``[H, W, 3]`` (``wandb.Image`` / PNG ready)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

__all__ = ["PROJECTIONS", "similarity_image", "prototype_image", "project_2d"]

#: 2-D projections of the prototype figure (``bridge.posebh.figure_projection``)
PROJECTIONS = ("tsne", "pca")

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


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the rows of ``x``: ``pca`` (first two principal components) or ``tsne`` (exact t-SNE,
    perplexity 30, of the sign-invariant distances ``2 (1 - |cos|)``: PoseBH compares by ``|cos|``, so ``p`` and
    ``-p`` are one prototype; deterministic for ``seed``)."""
    if method == "tsne":
        from multipose.viz.tsne import sign_invariant_distances, tsne

        return tsne(distances=sign_invariant_distances(x), seed=seed)
    if method != "pca":
        raise ValueError(f"bridge.posebh.figure_projection must be one of {PROJECTIONS}, got {method!r}")
    c = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T


def _colour(i: int, n: int) -> tuple[int, int, int]:
    hsv = np.uint8([[[int(180 * i / max(n, 1)), 200, 230]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


#: marker shapes of the datasets, in mix order (a sixth dataset reuses the first shape)
MARKERS = ("circle", "square", "triangle", "diamond", "cross")


def _marker(canvas: np.ndarray, x: int, y: int, shape: str, colour: tuple[int, int, int], r: int = 4) -> None:
    if shape == "circle":
        cv2.circle(canvas, (x, y), r, colour, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(canvas, (x - r + 1, y - r + 1), (x + r - 1, y + r - 1), colour, -1)
    elif shape == "cross":
        cv2.line(canvas, (x - r, y - r), (x + r, y + r), colour, 2, cv2.LINE_AA)
        cv2.line(canvas, (x - r, y + r), (x + r, y - r), colour, 2, cv2.LINE_AA)
    else:
        pts = [[x, y - r], [x - r, y + r - 1], [x + r, y + r - 1]]  # triangle
        if shape == "diamond":
            pts = [[x, y - r], [x - r, y], [x, y + r], [x + r, y]]
        cv2.fillPoly(canvas, [np.array(pts, np.int32)], colour, cv2.LINE_AA)


def prototype_image(
    prototypes: np.ndarray,
    tags: Sequence[str],
    owners: Sequence[str],
    size: int = 480,
    projection: str = "tsne",
    seed: int = 0,
) -> np.ndarray:
    """Scatter of the prototypes (``projection``: see :func:`project_2d`) coloured by semantic tag (the paper's
    figure: one colour per body part, whatever the dataset); the marker shape says the dataset (legend top left),
    the projection is named bottom left."""
    xy = project_2d(prototypes.astype(np.float64), projection, seed)
    lo, hi = xy.min(0), xy.max(0)
    pts = ((xy - lo) / np.maximum(hi - lo, 1e-9) * (size - 40) + 20).astype(int)
    canvas = np.full((size, size, 3), 255, np.uint8)
    uniq = sorted(set(tags))
    colour = {t: _colour(i, len(uniq)) for i, t in enumerate(uniq)}
    datasets = list(dict.fromkeys(owners))
    for (x, y), tag, ds in zip(pts, tags, owners):
        _marker(canvas, int(x), int(y), MARKERS[datasets.index(ds) % len(MARKERS)], colour[tag])
    for i, ds in enumerate(datasets):
        _marker(canvas, 9, 10 + 14 * i, MARKERS[i % len(MARKERS)], (60, 60, 60))
        cv2.putText(canvas, ds, (18, 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    label = "t-SNE of |cos|" if projection == "tsne" else "PCA"
    cv2.putText(canvas, label, (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
