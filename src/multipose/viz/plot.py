"""Line charts drawn with OpenCV/numpy (no matplotlib): the learning curves of a run.

``line_chart`` draws named series ``{label: (x, y)}`` into an RGB image with axes, tick labels and a legend;
``learning_curves`` puts the per-dataset training loss (log scale) beside the per-dataset validation metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

__all__ = ["PALETTE", "learning_curves", "line_chart", "smooth"]

#: RGB colours of the series, in order (colour-blind friendly, Okabe-Ito).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
    (0, 0, 0),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_AXIS = (60, 60, 60)
_GRID = (225, 225, 225)

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def smooth(values: Sequence[float], alpha: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing); ``alpha=0`` returns the input."""
    y = np.asarray(values, np.float64)
    out = np.empty_like(y)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(y):
        acc = alpha * acc + (1.0 - alpha) * v
        weight = alpha * weight + (1.0 - alpha)
        out[i] = acc / weight if weight > 0 else v
    return out


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not hi > lo:
        return np.array([lo])
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return np.arange(math.ceil(lo / step) * step, hi + 1e-9 * step, step)


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.4, colour=_AXIS, anchor="left"):
    (tw, th), _ = cv2.getTextSize(s, _FONT, scale, 1)
    x, y = org
    if anchor == "right":
        x -= tw
    elif anchor == "centre":
        x -= tw // 2
    cv2.putText(img, s, (int(x), int(y + th // 2)), _FONT, scale, colour, 1, cv2.LINE_AA)


def line_chart(
    series: Series,
    title: str,
    size_hw: tuple[int, int] = (320, 480),
    log_y: bool = False,
    y_range: tuple[float, float] | None = None,
    raw: Series | None = None,
    xlabel: str = "step",
    x_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """One chart as ``uint8 [H, W, 3]`` RGB: each series of ``series`` as a line in its palette colour (a single
    point as a dot), ``raw`` (same labels) drawn faintly underneath (e.g. unsmoothed values). Non-finite values
    (and non-positive ones with ``log_y``) are skipped. ``x_range`` / ``y_range`` fix the axes (default: the
    data's range). An empty chart says "no data yet"."""
    h, w = size_hw
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 58, 12, 26, 34
    x0, x1, y0, y1 = left, w - right, top, h - bottom
    _text(img, title, (w // 2, 10), 0.45, (0, 0, 0), "centre")

    def clean(xs, ys):
        x = np.asarray(xs, np.float64)
        y = np.asarray(ys, np.float64)
        ok = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        return x[ok], (np.log10(y[ok]) if log_y else y[ok])

    lines = {k: clean(*v) for k, v in series.items()}
    faint = {k: clean(*v) for k, v in (raw or {}).items()}
    xs_all = np.concatenate([x for x, _ in [*lines.values(), *faint.values()]] or [np.zeros(0)])
    ys_all = np.concatenate([y for _, y in [*lines.values(), *faint.values()]] or [np.zeros(0)])
    cv2.rectangle(img, (x0, y0), (x1, y1), _AXIS, 1)
    if xs_all.size == 0:
        _text(img, "no data yet", ((x0 + x1) // 2, (y0 + y1) // 2), 0.45, _AXIS, "centre")
        return img
    xlo, xhi = x_range if x_range is not None else (float(xs_all.min()), float(xs_all.max()))
    if y_range is not None:
        ylo, yhi = (math.log10(v) for v in y_range) if log_y else y_range
    else:
        ylo, yhi = float(ys_all.min()), float(ys_all.max())
    if xhi <= xlo:
        xlo, xhi = xlo - 1.0, xhi + 1.0
    xpad = 0.02 * (xhi - xlo)  # end points (dots) stay inside the axes
    xlo, xhi = xlo - xpad, xhi + xpad
    if yhi <= ylo:
        pad = abs(ylo) * 0.1 or 0.5
        ylo, yhi = ylo - pad, yhi + pad
    else:
        pad = (yhi - ylo) * 0.05
        ylo, yhi = ylo - (pad if y_range is None else 0.0), yhi + (pad if y_range is None else 0.0)

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = x0 + (x - xlo) / (xhi - xlo) * (x1 - x0)
        py = y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)
        return np.stack([px, py], -1).round().astype(np.int32)

    if log_y:
        yt = np.arange(math.floor(ylo), math.ceil(yhi) + 1, dtype=np.float64)
        yt = yt[(yt >= ylo) & (yt <= yhi)]
        if yt.size < 2:  # less than a decade: round ticks in linear units
            lin = _ticks(10**ylo, 10**yhi)
            yt = np.log10(lin[lin > 0])
        ylabels = [f"{10**t:.3g}" for t in yt]
    else:
        yt = _ticks(ylo, yhi)
        ylabels = [f"{t:.3g}" for t in yt]
    for t, s in zip(yt, ylabels):
        py = int(to_px(np.array([xlo]), np.array([t]))[0, 1])
        cv2.line(img, (x0 + 1, py), (x1 - 1, py), _GRID, 1)
        _text(img, s, (x0 - 4, py), 0.35, _AXIS, "right")
    for t in _ticks(xlo, xhi):
        px = int(to_px(np.array([t]), np.array([ylo]))[0, 0])
        cv2.line(img, (px, y1), (px, y1 + 3), _AXIS, 1)
        _text(img, f"{t:g}", (px, y1 + 10), 0.35, _AXIS, "centre")
    _text(img, xlabel, ((x0 + x1) // 2, h - 8), 0.38, _AXIS, "centre")
    cv2.rectangle(img, (x0, y0), (x1, y1), _AXIS, 1)

    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(dict.fromkeys([*series, *(raw or {})]))}
    for k, (x, y) in faint.items():
        if x.size > 1:
            c = tuple(int(v + (255 - v) * 0.7) for v in colours[k])
            cv2.polylines(img, [to_px(x, y)], False, c, 1, cv2.LINE_AA)
    for k, (x, y) in lines.items():
        pts = to_px(x, y)
        if pts.shape[0] > 1:
            cv2.polylines(img, [pts], False, colours[k], 2, cv2.LINE_AA)
        for p in pts if pts.shape[0] <= 30 else pts[-1:]:
            cv2.circle(img, (int(p[0]), int(p[1])), 3, colours[k], -1, cv2.LINE_AA)
    # legend, top right inside the axes
    ly = y0 + 10
    for k in series:
        (tw, _), _ = cv2.getTextSize(k, _FONT, 0.35, 1)
        lx = x1 - tw - 26
        cv2.rectangle(img, (lx - 3, ly - 6), (x1 - 3, ly + 6), (255, 255, 255), -1)
        cv2.line(img, (lx, ly), (lx + 14, ly), colours[k], 2, cv2.LINE_AA)
        _text(img, k, (lx + 18, ly), 0.35, _AXIS)
        ly += 14
    return img


def learning_curves(
    losses: Series,
    metrics: Series,
    metric_names: Mapping[str, str] | None = None,
    smoothing: float = 0.9,
    size_hw: tuple[int, int] = (320, 480),
) -> np.ndarray:
    """Training loss per dataset (log scale, smoothed over the faint raw values) beside the validation metric
    per dataset (labelled ``dataset (metric)``), as one ``uint8 [H, 2W, 3]`` RGB image."""
    smoothed = {k: (x, smooth(y, smoothing)) for k, (x, y) in losses.items()}
    steps = [np.asarray(x, np.float64) for x, _ in [*losses.values(), *metrics.values()] if len(x)]
    x_range = (min(float(x.min()) for x in steps), max(float(x.max()) for x in steps)) if steps else None
    left = line_chart(smoothed, "training loss per dataset", size_hw, log_y=True, raw=losses, x_range=x_range)
    names = metric_names or {}
    labelled = {f"{k} ({names[k]})" if k in names else k: v for k, v in metrics.items()}
    values = np.concatenate([np.asarray(y, np.float64) for _, y in metrics.values()] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    unit = values.size > 0 and values.min() >= 0.0 and values.max() <= 1.0  # AP, PCK: a fixed 0..1 axis
    right = line_chart(
        labelled,
        "validation metric per dataset",
        size_hw,
        y_range=(0.0, 1.0) if unit else None,
        x_range=x_range,
    )
    return np.concatenate([left, right], axis=1)
