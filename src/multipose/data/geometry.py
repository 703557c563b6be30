"""Affine geometry of top-down crops.

Conventions (see ``docs/architecture.md``):

* Sizes are ``(H, W)``; points are ``(x, y)`` in pixels, pixel centres at integer coordinates.
* ``center`` is the box centre in image pixels and ``scale`` the padded box size ``[w, h]`` in
  **pixels** (mmpose's ``scale * 200``).
* Two warps are provided, both as in mmpose 0.x / ViTPose:

  - **UDP** (unbiased data processing, ``use_udp=True``): the box ``[c - s/2, c + s/2]`` is mapped onto
    ``[0, W-1] x [0, H-1]``, i.e. ``x' = (W-1)/s_w * (x - c_x) + (W-1)/2`` at rotation 0.  This is mmpose's
    ``get_warp_matrix(r, 2c, input_size - 1, scale)``.
  - **classic** (``use_udp=False``): mmpose's ``get_affine_transform``, which maps the box onto
    ``[0, W] x [0, H]``, i.e. ``x' = W/s_w * (x - c_x) + W/2`` at rotation 0.

  For the same ``rot_deg`` the two mmpose warps rotate the content in *opposite* directions (UDP uses
  ``R(theta)``, the classic warp ``R(-theta)``).  We keep both signs as in mmpose: training rotations are
  symmetric and test rotation is 0, so results are unaffected, and ``rotation`` recorded with a sample is
  always meant for the same ``use_udp`` it was produced with.

  mmpose's classic warp scales both axes by ``W / s_w``; here each axis uses its own ``W/s_w`` and ``H/s_h``
  so that :func:`crop_to_image` (mmpose's ``transform_preds``) is its exact inverse.  The two agree whenever
  the scale has the input aspect ratio, which :func:`box_to_center_scale` guarantees.

All functions are vectorised over leading batch dimensions (numpy); :func:`crop_to_image` and
:func:`warp_points` also accept torch tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "sanitize_box",
    "box_to_center_scale",
    "get_warp_matrix",
    "warp_points",
    "crop_to_image",
]


def _size_hw(size: Sequence[int] | np.ndarray, name: str = "input_size") -> tuple[int, int]:
    vals = [int(v) for v in np.asarray(size).reshape(-1)]
    if len(vals) != 2 or min(vals) < 2:
        raise ValueError(f"{name} must be (H, W) with both >= 2, got {size!r}")
    return vals[0], vals[1]


BOX_CONVENTIONS = ("mmpose", "clip")


def sanitize_box(
    box: Sequence[float], width: float, height: float, convention: str = "mmpose"
) -> tuple[float, float, float, float]:
    """Ground-truth ``xywh`` box -> the box the crop is built from, given the image size ``W x H``.

    * ``mmpose`` (default): mmpose 0.x's COCO-style loaders (``x1 = max(0, x)``,
      ``x2 = min(W - 1, x1 + max(0, w - 1))``, same for y, box ``[x1, y1, x2 - x1, y2 - y1]``). The box is read
      as inclusive pixel indices, so a box inside the image loses one pixel of width and height and its centre
      moves by ``-0.5`` px (``x + (w - 1) / 2``); a box starting left of the image keeps its width and is shifted
      right, not cut. This is what ViTPose's ground-truth-box crops and numbers are made with.
    * ``clip``: geometric clipping of the corners ``x``, ``x + w`` to ``[0, W - 1]`` (earlier multipose
      behaviour; centre ``x + w / 2`` for a box inside the image).

    The caller keeps the box only if both sides are > 0 (mmpose: ``x2 > x1 and y2 > y1``).
    """
    x, y, w, h = (float(v) for v in box)
    if convention == "mmpose":
        x1, y1 = max(0.0, x), max(0.0, y)
        x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
        y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    elif convention == "clip":
        x1, y1 = min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)
        x2, y2 = min(max(x + w, 0.0), width - 1.0), min(max(y + h, 0.0), height - 1.0)
    else:
        raise ValueError(f"sanitize_box: convention must be one of {BOX_CONVENTIONS}, got {convention!r}")
    return x1, y1, x2 - x1, y2 - y1


def box_to_center_scale(
    bbox_xywh: np.ndarray | Sequence[float],
    aspect_wh: float,
    padding: float = 1.25,
) -> tuple[np.ndarray, np.ndarray]:
    """Box ``[..., 4]`` xywh (pixels) -> ``(center [..., 2], scale [..., 2])`` in pixels.

    The box is grown (never shrunk) to the aspect ratio ``aspect_wh = W / H`` of the network input,
    then multiplied by ``padding`` (mmpose ``_xywh2cs``; the centre is ``x + w/2``).
    """
    if not aspect_wh > 0:
        raise ValueError(f"aspect_wh must be the input width / height (> 0), got {aspect_wh!r}")
    box = np.asarray(bbox_xywh, dtype=np.float64)
    if box.shape[-1:] != (4,):
        raise ValueError(f"bbox_xywh must have shape [..., 4] (x, y, w, h), got shape {box.shape}")
    x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    wide = w > aspect_wh * h
    new_w = np.where(wide, w, h * aspect_wh)
    new_h = np.where(wide, w / aspect_wh, h)
    scale = np.stack([new_w, new_h], axis=-1) * padding
    return center.astype(np.float32), scale.astype(np.float32)


def get_warp_matrix(
    center: np.ndarray | Sequence[float],
    scale: np.ndarray | Sequence[float],
    rot_deg: float | np.ndarray,
    output_size_hw: Sequence[int],
    use_udp: bool,
) -> np.ndarray:
    """Affine matrix ``[..., 2, 3]`` (float64) from image pixels to crop pixels.

    Args:
        center: ``[..., 2]`` box centre (pixels).
        scale: ``[..., 2]`` box size ``[w, h]`` (pixels).
        rot_deg: rotation in degrees (scalar or ``[...]``), mmpose sign convention per warp (module doc).
        output_size_hw: crop size ``(H, W)``.
        use_udp: UDP warp (box -> ``[0, W-1]``) or classic warp (box -> ``[0, W]``).
    """
    out_h, out_w = _size_hw(output_size_hw, "output_size_hw")
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    if c.shape[-1:] != (2,) or s.shape[-1:] != (2,):
        raise ValueError(f"center and scale must have shape [..., 2], got {c.shape} and {s.shape}")
    if np.any(~(s > 0)):
        raise ValueError(f"scale (box size in pixels) must be > 0, got {s}")
    theta = np.deg2rad(np.asarray(rot_deg, dtype=np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    if use_udp:
        kx, ky = (out_w - 1.0) / s[..., 0], (out_h - 1.0) / s[..., 1]
        dst_cx, dst_cy = (out_w - 1.0) * 0.5, (out_h - 1.0) * 0.5
        sign = 1.0  # linear part k * R(theta)
    else:
        kx, ky = out_w / s[..., 0], out_h / s[..., 1]
        dst_cx, dst_cy = out_w * 0.5, out_h * 0.5
        sign = -1.0  # linear part k * R(-theta)
    a00, a01 = kx * cos, -sign * kx * sin
    a10, a11 = sign * ky * sin, ky * cos
    cx, cy = c[..., 0], c[..., 1]
    b0 = dst_cx - (a00 * cx + a01 * cy)
    b1 = dst_cy - (a10 * cx + a11 * cy)
    row0 = np.stack(np.broadcast_arrays(a00, a01, b0), axis=-1)
    row1 = np.stack(np.broadcast_arrays(a10, a11, b1), axis=-1)
    return np.stack([row0, row1], axis=-2)


def warp_points(points: Any, matrix: Any) -> Any:
    """Apply affine ``matrix [..., 2, 3]`` to ``points [..., N, 2]`` (extra trailing columns are ignored).

    Returns ``[..., N, 2]`` in the dtype of ``points`` (numpy or torch).
    """
    if _is_torch(points):
        import torch

        m = torch.as_tensor(matrix, dtype=points.dtype, device=points.device)
        xy = points[..., :2]
        return xy @ m[..., :2].transpose(-1, -2) + m[..., None, :, 2]
    pts = np.asarray(points)
    m = np.asarray(matrix, dtype=np.float64)
    xy = pts[..., :2].astype(np.float64)
    out = xy @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]
    return out.astype(pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float32)


def crop_to_image(
    coords: Any,
    center: Any,
    scale: Any,
    input_size_hw: Sequence[int],
    use_udp: bool,
) -> Any:
    """Map crop (network input) pixels back to image pixels (rotation 0, mmpose ``transform_preds``).

    Args:
        coords: ``[..., K, 2]`` points in input-crop pixels (extra trailing columns are dropped).
        center, scale: ``[..., 2]`` crop geometry in image pixels, broadcast against ``coords[..., 0, :]``.
        input_size_hw: crop size ``(H, W)``.
        use_udp: UDP uses ``scale / (size - 1)``, classic ``scale / size``.

    Returns ``[..., K, 2]``, numpy float32 (or torch, matching ``coords``).
    """
    in_h, in_w = _size_hw(input_size_hw, "input_size_hw")
    den_w, den_h = (in_w - 1.0, in_h - 1.0) if use_udp else (float(in_w), float(in_h))
    if _is_torch(coords):
        import torch

        dtype = coords.dtype if coords.is_floating_point() else torch.float32
        xy = coords[..., :2].to(dtype)
        c = torch.as_tensor(np.asarray(center) if not _is_torch(center) else center, device=xy.device)
        s = torch.as_tensor(np.asarray(scale) if not _is_torch(scale) else scale, device=xy.device)
        c, s = c.to(dtype)[..., None, :], s.to(dtype)[..., None, :]
        den = torch.tensor([den_w, den_h], dtype=dtype, device=xy.device)
        return xy * (s / den) + c - s * 0.5
    xy = np.asarray(coords, dtype=np.float64)[..., :2]
    c = np.asarray(center, dtype=np.float64)[..., None, :]
    s = np.asarray(scale, dtype=np.float64)[..., None, :]
    den = np.array([den_w, den_h])
    return (xy * (s / den) + c - s * 0.5).astype(np.float32)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")
