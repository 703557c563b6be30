"""Pictures of the ACAE, drawn with OpenCV/numpy (the package has no matplotlib), for the run's ``pictures/`` and
the loggers (:meth:`multipose.bridges.acae.ACAEBridge.figures`) and the notebook.

* :func:`weights_image` - a weight matrix (e.g. the encoder's ``[J, L]``) as a blue-white-red image, one row per
  joint with its name, one column per latent; thin lines separate the left, right and central latents.
* :func:`latents_image` - crops side by side, each with the heads' union joints (grey, size by confidence) and the
  AE's latent points projected from them (left latents blue, right orange, central green).

Every function returns an RGB ``uint8`` image ``[H, W, 3]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["LATENT_COLOURS", "latents_image", "weights_image"]

#: RGB colours of the left, right and central latents (the side colours of ``multipose.inference.draw``)
LATENT_COLOURS = ((30, 144, 255), (255, 140, 0), (50, 205, 50))


def _latent_side(index: int, n_sided: int) -> int:
    """0 (left), 1 (right) or 2 (central) for latent ``index``: the AE orders them left pairs, right, central."""
    half = n_sided // 2
    return 0 if index < half else 1 if index < n_sided else 2


def weights_image(
    matrix: np.ndarray, row_names: Sequence[str], n_sided: int = 0, cell: int = 9, label_w: int = 150
) -> np.ndarray:
    """``matrix [R, C]`` as an image: blue (negative) - white (0) - red (positive), scaled by its largest absolute
    value; row labels on the left; with ``n_sided`` > 0, vertical lines after the left and the right latents."""
    m = np.asarray(matrix, np.float64)
    if m.ndim != 2 or m.shape[0] != len(row_names):
        raise ValueError(
            f"weights_image: matrix [R, C] with one name per row; got {m.shape}, {len(row_names)}"
        )
    x = np.clip(m / max(float(np.abs(m).max(initial=0.0)), 1e-12), -1.0, 1.0)
    rgb = np.stack([1 + np.minimum(x, 0), 1 - np.abs(x), 1 - np.maximum(x, 0)], -1)
    rgb = (rgb * 255).astype(np.uint8).repeat(cell, 0).repeat(cell, 1)
    img = np.full((rgb.shape[0], label_w + rgb.shape[1], 3), 255, np.uint8)
    img[:, label_w:] = rgb
    for r, name in enumerate(row_names):
        cv2.putText(img, str(name)[:24], (2, r * cell + cell - 1), cv2.FONT_HERSHEY_PLAIN, 0.6, (0, 0, 0), 1)
    for col in (n_sided // 2, n_sided) if n_sided > 0 else ():
        x0 = label_w + col * cell
        cv2.line(img, (x0, 0), (x0, img.shape[0] - 1), (0, 0, 0), 1)
    return img


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """A crop ``[3, H, W]`` or ``[H, W, 3]`` of any range -> RGB ``uint8 [H, W, 3]`` (min-max stretched)."""
    img = np.asarray(image, np.float32)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    lo, hi = float(img.min()), float(img.max())
    return np.ascontiguousarray(((img - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8))


def latents_image(
    crops: Sequence[np.ndarray],
    joints: np.ndarray,
    weights: np.ndarray,
    latents: np.ndarray,
    n_sided: int,
    height: int = 256,
) -> np.ndarray:
    """The crops side by side, each resized to ``height``, with its union ``joints [B, J, 2]`` (crop pixels; drawn
    where ``weights [B, J]`` > 0) and ``latents [B, L, 2]`` (crop pixels) drawn on it."""
    tiles = []
    for b, crop in enumerate(crops):
        img = _to_uint8(crop)
        f = height / img.shape[0]
        img = cv2.resize(img, (max(1, round(img.shape[1] * f)), height), interpolation=cv2.INTER_LINEAR)
        for (px, py), wj in zip(np.asarray(joints[b]) * f, np.asarray(weights[b]), strict=True):
            if wj > 0 and np.isfinite(px) and np.isfinite(py):
                r = int(1 + 2 * min(float(wj), 1.0))
                cv2.circle(img, (round(float(px)), round(float(py))), r, (160, 160, 160), -1, cv2.LINE_AA)
        for index, (zx, zy) in enumerate(np.asarray(latents[b]) * f):
            if np.isfinite(zx) and np.isfinite(zy):
                colour = LATENT_COLOURS[_latent_side(index, n_sided)]
                cv2.circle(img, (round(float(zx)), round(float(zy))), 4, colour, -1, cv2.LINE_AA)
        tiles.append(img)
    if not tiles:
        raise ValueError("latents_image: no crops to draw")
    return np.concatenate(tiles, axis=1)
