"""Heatmap codecs: keypoints in input-crop pixels <-> Gaussian heatmaps.

Two codecs with one interface (mmpose 0.x / ViTPose semantics):

* :class:`UDPHeatmap` (``"udp"``): stride ``(input - 1) / (heatmap - 1)`` per axis; an unnormalised Gaussian
  (peak <= 1) drawn at the **sub-pixel** heatmap location inside a ``(6 sigma + 1)`` window placed around the
  rounded location; decoded by argmax + DARK-UDP refinement (blur, log, one Newton step).
* :class:`MSRAHeatmap` (``"msra"``): stride ``input / heatmap``; the Gaussian is centred on the rounded integer
  location (no sub-pixel information); decoded by argmax + a quarter-pixel shift toward the higher neighbour,
  or DARK refinement with ``use_dark=True``.

Shapes: ``input_size`` and ``heatmap_size`` are ``(H, W)``; keypoints are ``[K, 3]`` ``(x, y, v)`` in
input-crop pixels; heatmaps are ``[K, h, w]`` (encode) and ``[B, K, h, w]`` (decode, flip_back).

Target weights follow mmpose: a labelled keypoint (``v > 0``) keeps weight 1 until its Gaussian window leaves
the heatmap, so keypoints just outside the crop still teach.  ``edge_rule="mmpose"`` (default) is mmpose 0.x's
test in both ``_msra_generate_target`` and ``_udp_generate_target`` (window ``[ul, br)`` with
``ul = int(mu - 3 sigma)``, ``br = int(mu + 3 sigma + 1)``, ``mu = int(x / stride + 0.5)``; weight 0 iff
``ul >= size`` or ``br < 0`` on either axis).  Its ``br < 0`` keeps weight 1 for a keypoint whose window ends one
pixel before the map (target all zero there); ``edge_rule="window"`` gives weight 0 as soon as no window pixel
lies on the heatmap.  The two codecs differ only through their stride and Gaussian centre.

Decoding returns coordinates in input-crop pixels (``heatmap px * stride``); use
:func:`multipose.data.geometry.crop_to_image` to go on to image pixels.  A keypoint whose heatmap maximum is
``<= 0`` gets score 0 and heatmap coordinate ``(-1, -1)`` (``-stride`` in input pixels), as in mmpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["HeatmapCodec", "UDPHeatmap", "MSRAHeatmap", "build_codec", "available_codecs"]


def _pair(size: Sequence[int], name: str) -> tuple[int, int]:
    vals = [int(v) for v in np.asarray(size).reshape(-1)]
    if len(vals) != 2 or min(vals) < 2:
        raise ValueError(f"{name} must be (H, W) with both >= 2, got {size!r}")
    return vals[0], vals[1]


def _to_numpy_heatmaps(heatmaps: Any) -> np.ndarray:
    if type(heatmaps).__module__.startswith("torch"):
        heatmaps = heatmaps.detach().float().cpu().numpy()
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim != 4:
        raise ValueError(f"decode expects heatmaps of shape [B, K, h, w], got shape {hm.shape}")
    return hm


def _reflect101(idx: np.ndarray, n: int) -> np.ndarray:
    """OpenCV BORDER_REFLECT_101 index mapping (``gfedcb|abcdefgh|gfedcba``) for any offset."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    t = np.mod(idx, period)
    return np.where(t > n - 1, period - t, t)


class HeatmapCodec:
    """Base class: shared argmax, encode window logic and the flip-back operation.

    Subclasses set ``stride`` (x, y) and implement ``_centres`` (Gaussian centre in heatmap pixels) and
    ``_refine`` (sub-pixel refinement of the integer argmax).
    """

    name = "base"
    shift_flip_heatmap = False
    EDGE_RULES = ("mmpose", "window")

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        edge_rule: str = "mmpose",
    ) -> None:
        self.input_size = _pair(input_size, "input_size")
        self.heatmap_size = _pair(heatmap_size, "heatmap_size")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0 (heatmap pixels), got {sigma!r}")
        if edge_rule not in self.EDGE_RULES:
            raise ValueError(f"edge_rule must be one of {self.EDGE_RULES}, got {edge_rule!r}")
        self.edge_rule = edge_rule
        self.sigma = float(sigma)
        self.radius = 3.0 * self.sigma  # half-size of the Gaussian window (mmpose tmp_size)
        self.stride = self._stride()  # np.ndarray [2] (x, y): input px per heatmap px

    # ------------------------------------------------------------------ interface
    def _stride(self) -> np.ndarray:
        raise NotImplementedError

    def _centres(self, mu_int: np.ndarray, mu: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _refine(self, heatmaps: np.ndarray, coords: np.ndarray, valid: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma})"
        )

    # ------------------------------------------------------------------ encode
    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``keypoints [K, 3]`` (x, y, v) in input px -> ``(heatmaps [K, h, w] float32, weights [K] float32)``.

        ``weight = (v > 0)``, set to 0 when the ``3 sigma`` window leaves the heatmap (``edge_rule``, module
        doc); heatmaps of zero-weight keypoints are all zero.
        """
        kpts = np.asarray(keypoints, dtype=np.float64)
        if kpts.ndim != 2 or kpts.shape[1] < 3:
            raise ValueError(f"encode expects keypoints of shape [K, 3] (x, y, v), got shape {kpts.shape}")
        h, w = self.heatmap_size
        labelled = kpts[:, 2] > 0
        if not np.all(np.isfinite(kpts[labelled, :2])):
            bad = np.flatnonzero(labelled & ~np.all(np.isfinite(kpts[:, :2]), axis=1)).tolist()
            raise ValueError(
                f"encode: labelled keypoints {bad} have non-finite coordinates; set v=0 for them"
            )
        xy = np.where(labelled[:, None], kpts[:, :2], 0.0)
        mu = xy / self.stride  # sub-pixel heatmap location
        mu_int = np.trunc(mu + 0.5)  # mmpose: int(mu + 0.5)
        r = self.radius
        size = np.array([w, h], dtype=np.float64)
        if self.edge_rule == "mmpose":
            ul, br = np.trunc(mu_int - r), np.trunc(mu_int + r + 1.0)
            inside = np.all((ul < size) & (br >= 0), axis=1)
        else:  # some pixel of the drawn window |x - mu_int| <= r is on the map
            inside = np.all((mu_int - r <= size - 1) & (mu_int + r >= 0), axis=1)
        weights = (labelled & inside).astype(np.float32)

        centre = self._centres(mu_int, mu)  # [K, 2] Gaussian centre in heatmap px
        inv2s2 = 1.0 / (2.0 * self.sigma**2)
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs[None, :] - centre[:, :1]) ** 2) * inv2s2)
        gy = np.exp(-((ys[None, :] - centre[:, 1:]) ** 2) * inv2s2)
        gx *= np.abs(xs[None, :] - mu_int[:, :1]) <= r
        gy *= np.abs(ys[None, :] - mu_int[:, 1:]) <= r
        gx *= weights[:, None]
        heatmaps = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
        return heatmaps, weights

    # ------------------------------------------------------------------ decode
    def decode(self, heatmaps: Any) -> tuple[np.ndarray, np.ndarray]:
        """``heatmaps [B, K, h, w]`` (numpy or torch) -> ``(coords [B, K, 2] float32 input px, scores [B, K])``."""
        hm = _to_numpy_heatmaps(heatmaps)
        b, k, h, w = hm.shape
        if (h, w) != self.heatmap_size:
            raise ValueError(
                f"{type(self).__name__}.decode: heatmaps are {h}x{w} but the codec was built for "
                f"heatmap_size {self.heatmap_size}"
            )
        flat = hm.reshape(b * k, h * w)
        idx = np.argmax(flat, axis=1)
        maxval = flat[np.arange(b * k), idx]
        valid = maxval > 0
        coords = np.stack([idx % w, idx // w], axis=1).astype(np.float64)
        coords[~valid] = -1.0
        if valid.any():
            coords = self._refine(hm.reshape(b * k, h, w), coords, valid)
        coords = (coords * self.stride).astype(np.float32).reshape(b, k, 2)
        scores = np.where(valid, maxval, 0.0).astype(np.float32).reshape(b, k)
        return coords, scores

    # ------------------------------------------------------------------ flip test
    def flip_back(self, heatmaps: Any, flip_indices: Sequence[int]) -> Any:
        """Undo a horizontal input flip on ``heatmaps [B, K, h, w]`` (torch): swap partners, mirror W.

        The MSRA codec also shifts the result one pixel to the right (mmpose ``shift_heatmap=True``; the
        first column keeps its value); UDP needs no shift.
        """
        import torch

        if heatmaps.ndim != 4:
            raise ValueError(f"flip_back expects heatmaps [B, K, h, w], got shape {tuple(heatmaps.shape)}")
        k = heatmaps.shape[1]
        flip = list(flip_indices)
        if len(flip) != k:
            raise ValueError(
                f"flip_back: flip_indices has {len(flip)} entries but the heatmaps have {k} channels; "
                "slice the heatmaps to the skeleton's keypoints first"
            )
        out = heatmaps[:, torch.as_tensor(flip, device=heatmaps.device, dtype=torch.long)].flip(-1)
        if self.shift_flip_heatmap:
            out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
        return out


class UDPHeatmap(HeatmapCodec):
    """UDP target (sub-pixel Gaussian) with DARK-UDP decoding (mmpose ``post_dark_udp``).

    Args:
        blur_kernel: Gaussian blur kernel of the refinement (ViTPose ``modulate_kernel=11``).
    """

    name = "udp"
    shift_flip_heatmap = False

    def __init__(
        self, input_size, heatmap_size, sigma: float = 2.0, blur_kernel: int = 11, edge_rule: str = "mmpose"
    ) -> None:
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd integer, got {blur_kernel!r}")
        self.blur_kernel = int(blur_kernel)
        super().__init__(input_size, heatmap_size, sigma, edge_rule)

    def _stride(self) -> np.ndarray:
        (ih, iw), (hh, hw) = self.input_size, self.heatmap_size
        return np.array([(iw - 1.0) / (hw - 1.0), (ih - 1.0) / (hh - 1.0)])

    def _centres(self, mu_int: np.ndarray, mu: np.ndarray) -> np.ndarray:
        return mu

    def _refine(self, heatmaps: np.ndarray, coords: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """One Newton step on log(clip(blur(heatmap), 1e-3, 50)) around the argmax, edge padding 1."""
        n, h, w = heatmaps.shape
        sel = np.flatnonzero(valid)
        px = coords[sel, 0].astype(np.int64)
        py = coords[sel, 1].astype(np.int64)
        kern = cv2.getGaussianKernel(self.blur_kernel, 0).astype(np.float32).ravel()  # cv2's sigma rule
        half = self.blur_kernel // 2
        offs = np.arange(-half, half + 1)
        d = np.arange(-1, 2)
        # neighbour rows/cols (edge padding = clipping), then the blur taps around them (reflect-101 border)
        qy = np.clip(py[:, None] + d, 0, h - 1)  # [M, 3]
        qx = np.clip(px[:, None] + d, 0, w - 1)
        ry = _reflect101(qy[:, :, None] + offs, h)  # [M, 3, T]
        rx = _reflect101(qx[:, :, None] + offs, w)
        rows = heatmaps[sel[:, None, None], ry]  # [M, 3, T, w] float32 (blur in float32 like cv2)
        vblur = np.einsum("mytw,t->myw", rows, kern)  # vertical blur at the 3 rows
        m = np.arange(len(sel))[:, None, None, None]
        cols = vblur[m, np.arange(3)[None, :, None, None], rx[:, None, :, :]]  # [M, 3, 3, T]
        blur = np.einsum("myxt,t->myx", cols, kern).astype(np.float64)  # [M, 3(y), 3(x)]
        lg = np.log(np.clip(blur, 0.001, 50.0))
        c = lg[:, 1, 1]
        dx = 0.5 * (lg[:, 1, 2] - lg[:, 1, 0])
        dy = 0.5 * (lg[:, 2, 1] - lg[:, 0, 1])
        dxx = lg[:, 1, 2] - 2 * c + lg[:, 1, 0]
        dyy = lg[:, 2, 1] - 2 * c + lg[:, 0, 1]
        dxy = 0.5 * (
            lg[:, 2, 2] - lg[:, 1, 2] - lg[:, 2, 1] + 2 * c - lg[:, 1, 0] - lg[:, 0, 1] + lg[:, 0, 0]
        )
        eps = float(np.finfo(np.float32).eps)  # mmpose regularises the Hessian by eps * I
        a, dd = dxx + eps, dyy + eps
        det = a * dd - dxy * dxy
        ok = det != 0
        det = np.where(ok, det, 1.0)
        step_x = (dd * dx - dxy * dy) / det
        step_y = (-dxy * dx + a * dy) / det
        out = coords.copy()
        out[sel, 0] -= np.where(ok, step_x, 0.0)
        out[sel, 1] -= np.where(ok, step_y, 0.0)
        return out


class MSRAHeatmap(HeatmapCodec):
    """MSRA target (Gaussian on the rounded integer location) with quarter-pixel or DARK decoding.

    Args:
        use_dark: refine with DARK (blur with zero border, ``log(max(., 1e-10))``, Newton step with the
            wide-stencil Hessian, only for argmaxes with ``1 < x < w-2`` and ``1 < y < h-2``) instead of the
            ``+-0.25`` shift.  mmpose also rescales the blurred map to the original maximum; that adds a
            constant to the log map and leaves the Newton step unchanged, so it is omitted.
        blur_kernel: DARK blur kernel (mmpose default 11).
    """

    name = "msra"
    shift_flip_heatmap = True

    def __init__(
        self,
        input_size,
        heatmap_size,
        sigma: float = 2.0,
        use_dark: bool = False,
        blur_kernel: int = 11,
        edge_rule: str = "mmpose",
    ) -> None:
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd integer, got {blur_kernel!r}")
        self.use_dark = bool(use_dark)
        self.blur_kernel = int(blur_kernel)
        super().__init__(input_size, heatmap_size, sigma, edge_rule)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", use_dark={self.use_dark})"

    def _stride(self) -> np.ndarray:
        (ih, iw), (hh, hw) = self.input_size, self.heatmap_size
        return np.array([iw / hw, ih / hh], dtype=np.float64)

    def _centres(self, mu_int: np.ndarray, mu: np.ndarray) -> np.ndarray:
        return mu_int

    def _refine(self, heatmaps: np.ndarray, coords: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.use_dark:
            return self._refine_dark(heatmaps, coords, valid)
        n, h, w = heatmaps.shape
        px = coords[:, 0].astype(np.int64)
        py = coords[:, 1].astype(np.int64)
        inner = valid & (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
        i = np.flatnonzero(inner)
        out = coords.copy()
        if i.size:
            x, y = px[i], py[i]
            diff_x = heatmaps[i, y, x + 1] - heatmaps[i, y, x - 1]
            diff_y = heatmaps[i, y + 1, x] - heatmaps[i, y - 1, x]
            out[i, 0] += np.sign(diff_x) * 0.25
            out[i, 1] += np.sign(diff_y) * 0.25
        return out

    def _refine_dark(self, heatmaps: np.ndarray, coords: np.ndarray, valid: np.ndarray) -> np.ndarray:
        n, h, w = heatmaps.shape
        px = coords[:, 0].astype(np.int64)
        py = coords[:, 1].astype(np.int64)
        inner = valid & (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
        sel = np.flatnonzero(inner)
        out = coords.copy()
        if sel.size == 0:
            return out
        kern = cv2.getGaussianKernel(self.blur_kernel, 0).astype(np.float64).ravel()
        half = self.blur_kernel // 2
        offs = np.arange(-half, half + 1)
        d = np.arange(-2, 3)
        hm = heatmaps[sel].astype(np.float64)
        m = np.arange(len(sel))[:, None, None]
        ty = py[sel, None, None] + d[None, :, None] + offs  # [M, 5, T] rows of the blur taps
        tx = px[sel, None, None] + d[None, :, None] + offs
        my = (ty >= 0) & (ty < h)
        mx = (tx >= 0) & (tx < w)
        rows = hm[m, np.clip(ty, 0, h - 1)] * my[..., None]  # zero border
        vblur = np.einsum("mytw,t->myw", rows, kern)  # [M, 5, w]
        cols = vblur[m[..., None], np.arange(5)[None, :, None, None], np.clip(tx, 0, w - 1)[:, None, :, :]]
        cols = cols * mx[:, None, :, :]
        lg = np.log(np.maximum(np.einsum("myxt,t->myx", cols, kern), 1e-10))  # [M, 5, 5], centre (2, 2)
        dx = 0.5 * (lg[:, 2, 3] - lg[:, 2, 1])
        dy = 0.5 * (lg[:, 3, 2] - lg[:, 1, 2])
        dxx = 0.25 * (lg[:, 2, 4] - 2 * lg[:, 2, 2] + lg[:, 2, 0])
        dyy = 0.25 * (lg[:, 4, 2] - 2 * lg[:, 2, 2] + lg[:, 0, 2])
        dxy = 0.25 * (lg[:, 3, 3] - lg[:, 1, 3] - lg[:, 3, 1] + lg[:, 1, 1])
        det = dxx * dyy - dxy * dxy
        ok = det != 0
        det = np.where(ok, det, 1.0)
        out[sel, 0] -= np.where(ok, (dyy * dx - dxy * dy) / det, 0.0)
        out[sel, 1] -= np.where(ok, (-dxy * dx + dxx * dy) / det, 0.0)
        return out


_CODECS: dict[str, type[HeatmapCodec]] = {"udp": UDPHeatmap, "msra": MSRAHeatmap}


def available_codecs() -> list[str]:
    return sorted(_CODECS)


def build_codec(
    name: str, input_size: Sequence[int], heatmap_size: Sequence[int], sigma: float = 2.0, **kwargs: Any
) -> HeatmapCodec:
    """Build a codec by name (``"udp"`` or ``"msra"``, case-insensitive); ``kwargs`` go to its constructor."""
    key = str(name).lower()
    if key not in _CODECS:
        raise ValueError(f"unknown heatmap codec {name!r}; choose one of {available_codecs()}")
    try:
        return _CODECS[key](input_size, heatmap_size, sigma=sigma, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad option for heatmap codec {name!r}: {err}") from err
