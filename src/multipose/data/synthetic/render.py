"""Rasterise figures over textured backgrounds, with a per-pixel part map for honest visibility.

Images are ``uint8 [H, W, 3]`` **RGB**. Points follow OpenCV's drawing convention: pixel centres sit at
integer coordinates, so a landmark at ``(x, y)`` covers pixel ``(round(y), round(x))``.

The part map (``uint16 [H, W]``) stores ``figure_index * PARTS_PER_FIGURE + part_code + 1`` for the
front-most labelled piece at each pixel (0 = background). Drawing is back to front, so the part map
is exactly what a viewer would see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from multipose.data.synthetic.figures import Figure, Part

__all__ = [
    "Domain",
    "PARTS_PER_FIGURE",
    "render_background",
    "draw_figure",
    "add_clutter",
    "finish_image",
    "part_codes",
    "random_colour",
]

PARTS_PER_FIGURE = 64
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Domain:
    """The visual domain of one synthetic dataset (what makes datasets look different).

    Colours are sampled in HSV with OpenCV ranges (H 0..180, S and V 0..255).
    """

    name: str
    backgrounds: tuple[tuple[str, float], ...]  # (kind, weight): gradient | noise | stripes | blobs | room
    bg_sat: tuple[float, float]
    bg_val: tuple[float, float]
    bg_hues: tuple[float, float]  # hue range of background colours
    cloth_sat: tuple[float, float]
    cloth_val: tuple[float, float]
    blur_sigma: tuple[float, float]  # Gaussian blur sigma in px (0 = none)
    noise_std: tuple[float, float]  # additive Gaussian noise, grey levels
    jpeg_quality: tuple[int, int]
    clutter: tuple[int, int]  # number of background distractor strokes
    fur: tuple[tuple[float, float, float], ...] = ((30, 120, 140),)  # HSV base colours for animals


def _hsv(
    rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]
) -> tuple[float, float, float]:
    h = rng.uniform(*hue) % 180.0
    px = np.array([[[h, rng.uniform(*sat), rng.uniform(*val)]]], dtype=np.float32)
    rgb = cv2.cvtColor(px.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def random_colour(
    rng: np.random.Generator,
    dom: Domain,
    hue: tuple[float, float] = (0.0, 180.0),
    sat: tuple[float, float] | None = None,
    val: tuple[float, float] | None = None,
):
    """An RGB colour from the domain's clothing palette (or the given HSV ranges)."""
    return _hsv(rng, hue, sat or dom.cloth_sat, val or dom.cloth_val)


# ----------------------------------------------------------------------------------------------
# Backgrounds
# ----------------------------------------------------------------------------------------------


def _bg_colour(rng: np.random.Generator, dom: Domain) -> np.ndarray:
    return np.array(_hsv(rng, dom.bg_hues, dom.bg_sat, dom.bg_val), dtype=np.float32)


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


_NOISE_TILE = 512


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed tile of unit Gaussian noise (seeded constant); images take random crops of it, which is
    much cheaper than drawing fresh noise per pixel and still deterministic."""
    tile = np.random.default_rng(20240).standard_normal((_NOISE_TILE, _NOISE_TILE, 3), dtype=np.float32)
    tile.setflags(write=False)
    return tile


def _noise(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    """``[h, w, channels]`` unit Gaussian noise cropped from the bank at a random offset (tiled if the
    image is larger than the bank)."""
    bank = _noise_bank()
    reps = (-(-h // _NOISE_TILE) + 1, -(-w // _NOISE_TILE) + 1, 1)
    if reps[0] > 2 or reps[1] > 2:
        bank = np.tile(bank, reps)
    y0 = int(rng.integers(0, bank.shape[0] - h + 1))
    x0 = int(rng.integers(0, bank.shape[1] - w + 1))
    c0 = int(rng.integers(0, 3 - channels + 1))
    return bank[y0 : y0 + h, x0 : x0 + w, c0 : c0 + channels]


def _gradient(rng, dom, h, w) -> np.ndarray:
    c0, c1 = _bg_colour(rng, dom), _bg_colour(rng, dom)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = _grid(h, w)
    t = xx * math.cos(ang) + yy * math.sin(ang)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _smooth_noise(rng, dom, h, w) -> np.ndarray:
    g = int(rng.integers(3, 9))
    cols = np.stack([_bg_colour(rng, dom) for _ in range(4)])
    idx = rng.integers(0, 4, size=(g, g))
    mix = rng.uniform(0.0, 1.0, size=(g, g, 1)).astype(np.float32)
    grid = cols[idx] * mix + cols[(idx + 1) % 4] * (1 - mix)
    return cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _stripes(rng, dom, h, w) -> np.ndarray:
    c0, c1 = _bg_colour(rng, dom), _bg_colour(rng, dom)
    ang = rng.uniform(0, math.pi)
    period = rng.uniform(10, 60)
    yy, xx = _grid(h, w)
    t = 0.5 + 0.5 * np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * (2 * math.pi / period))
    if rng.uniform() < 0.5:
        t = (t > 0.5).astype(np.float32) * 0.8 + 0.1
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _blobs(rng, dom, h, w) -> np.ndarray:
    img = _gradient(rng, dom, h, w)
    for _ in range(int(rng.integers(8, 20))):
        c = tuple(float(v) for v in _bg_colour(rng, dom))
        centre = (int(rng.uniform(0, w) * _ONE), int(rng.uniform(0, h) * _ONE))
        axes = (int(rng.uniform(6, w / 4) * _ONE), int(rng.uniform(6, h / 4) * _ONE))
        cv2.ellipse(img, centre, axes, rng.uniform(0, 180), 0, 360, c, -1, cv2.LINE_AA, _SHIFT)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 3.0))


def _room(rng, dom, h, w) -> np.ndarray:
    wall, floor = _bg_colour(rng, dom), _bg_colour(rng, dom) * 0.8
    horizon = rng.uniform(0.45, 0.8) * h
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    t = np.clip((yy - horizon) / 3.0, 0.0, 1.0)
    img = np.broadcast_to(wall * (1 - t) + floor * t, (h, w, 3)).copy()
    # wall panels
    for _ in range(int(rng.integers(0, 4))):
        x0 = rng.uniform(0, w)
        pw = rng.uniform(8, w / 3)
        y0 = rng.uniform(0, horizon * 0.6)
        c = tuple(float(v) for v in _bg_colour(rng, dom))
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + pw), int(horizon * rng.uniform(0.7, 1.0))), c, -1)
    return img


_BACKGROUNDS = {
    "gradient": _gradient,
    "noise": _smooth_noise,
    "stripes": _stripes,
    "blobs": _blobs,
    "room": _room,
}


def render_background(rng: np.random.Generator, dom: Domain, size: tuple[int, int]) -> np.ndarray:
    """A float32 ``[H, W, 3]`` RGB background of a kind drawn from the domain's weights, plus grain."""
    h, w = size
    kinds, weights = zip(*dom.backgrounds)
    p = np.asarray(weights, dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    if kind not in _BACKGROUNDS:
        raise ValueError(
            f"domain {dom.name!r}: unknown background kind {kind!r}; known: {sorted(_BACKGROUNDS)}"
        )
    grain = np.float32(rng.uniform(2.0, 9.0))
    if kind == "stripes":  # sharp edges: full resolution
        img = _stripes(rng, dom, h, w).astype(np.float32)
        img += _noise(rng, h, w, 1) * grain
    else:  # smooth kinds: half resolution (4x fewer pixels), grain added there too (a 2-px texture)
        hs, ws = max(8, h // 2), max(8, w // 2)
        small = _BACKGROUNDS[kind](rng, dom, hs, ws).astype(np.float32)
        small += _noise(rng, hs, ws, 1) * grain
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 255, out=img)


def add_clutter(img: np.ndarray, rng: np.random.Generator, dom: Domain) -> None:
    """Background distractor strokes and boxes (limb-like shapes that are not figures)."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(dom.clutter[0], dom.clutter[1] + 1))):
        c = tuple(float(v) * rng.uniform(0.6, 1.1) for v in _bg_colour(rng, dom))
        if rng.uniform() < 0.6:
            p0 = rng.uniform(0, 1, 2) * (w, h)
            p1 = p0 + rng.normal(0, 30, 2)
            cv2.line(img, _pt(p0), _pt(p1), c, int(rng.integers(3, 12)), cv2.LINE_AA, _SHIFT)
        else:
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            cv2.rectangle(
                img, (int(x), int(y)), (int(x + rng.uniform(5, 40)), int(y + rng.uniform(5, 40))), c, -1
            )


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _pts(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _mul(c, k: float) -> tuple[float, float, float]:
    return tuple(float(min(255.0, v * k)) for v in c)  # type: ignore[return-value]


def part_codes(fig: Figure) -> dict[str, int]:
    """Part name -> code (0-based, stable: order of first appearance in the figure's part list)."""
    codes: dict[str, int] = {}
    for p in fig.parts:
        if p.label and p.name not in codes:
            codes[p.name] = len(codes)
    if len(codes) >= PARTS_PER_FIGURE:
        raise ValueError(
            f"figure has {len(codes)} labelled parts; at most {PARTS_PER_FIGURE - 1} fit the part map"
        )
    return codes


def draw_figure(img: np.ndarray, lab: np.ndarray, fig: Figure, fig_index: int, light: np.ndarray) -> None:
    """Draw a placed figure (pixels) into ``img`` (float32 RGB) and ``lab`` (uint16 part map), in place.

    Capsules and polygons get a dark outline, a base tone and a highlight shifted towards ``light`` (a
    unit 2D vector), which reads as a shaded cylinder / rounded body.
    """
    codes = part_codes(fig)
    for part in fig.parts:
        value = fig_index * PARTS_PER_FIGURE + codes[part.name] + 1 if part.label else 0
        _draw_part(img, lab, part, value, light)


def _draw_part(img: np.ndarray, lab: np.ndarray, part: Part, value: int, light: np.ndarray) -> None:
    col = part.colour
    if part.shape == "capsule":
        w = max(1.0, part.width)
        p0, p1 = part.points[0], part.points[1]
        t_out = max(1, int(round(w + 2)))
        cv2.line(img, _pt(p0), _pt(p1), _mul(col, 0.45), t_out, cv2.LINE_AA, _SHIFT)
        cv2.line(img, _pt(p0), _pt(p1), _mul(col, 0.8), max(1, int(round(w))), cv2.LINE_AA, _SHIFT)
        if part.shade and w >= 4:
            off = light * w * 0.18
            cv2.line(
                img,
                _pt(p0 + off),
                _pt(p1 + off),
                _mul(col, 1.0),
                max(1, int(round(w * 0.55))),
                cv2.LINE_AA,
                _SHIFT,
            )
            off = light * w * 0.28
            cv2.line(
                img,
                _pt(p0 + off),
                _pt(p1 + off),
                _mul(col, 1.18),
                max(1, int(round(w * 0.18))),
                cv2.LINE_8,
                _SHIFT,
            )
        if value:
            cv2.line(lab, _pt(p0), _pt(p1), value, t_out, cv2.LINE_8, _SHIFT)
    elif part.shape == "poly":
        pts = _pts(part.points)
        if part.shade:
            cv2.fillPoly(img, [pts], _mul(col, 0.8), cv2.LINE_AA, _SHIFT)
            cv2.polylines(img, [pts], True, _mul(col, 0.45), 2, cv2.LINE_AA, _SHIFT)
            c = part.points.mean(0)
            span = float(np.linalg.norm(part.points.max(0) - part.points.min(0)))
            inner = c + (part.points - c) * 0.62 + light * span * 0.08
            cv2.fillPoly(img, [_pts(inner)], _mul(col, 1.0), cv2.LINE_AA, _SHIFT)
            inner = c + (part.points - c) * 0.3 + light * span * 0.15
            cv2.fillPoly(img, [_pts(inner)], _mul(col, 1.12), cv2.LINE_8, _SHIFT)
        else:
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA, _SHIFT)
        if value:
            cv2.fillPoly(lab, [pts], value, cv2.LINE_8, _SHIFT)
            if part.shade:
                cv2.polylines(lab, [pts], True, value, 2, cv2.LINE_8, _SHIFT)
    elif part.shape == "line":
        t = max(1, int(round(part.width)))
        pts = _pts(part.points)
        if part.shade:
            cv2.polylines(img, [pts], False, _mul(col, 0.5), t + 1, cv2.LINE_AA, _SHIFT)
        cv2.polylines(img, [pts], False, col, t, cv2.LINE_AA, _SHIFT)
        if value:
            cv2.polylines(lab, [pts], False, value, t + (1 if part.shade else 0), cv2.LINE_8, _SHIFT)
    elif part.shape == "dot":
        r = max(1, int(round(part.width / 2 * _ONE)))
        cv2.circle(img, _pt(part.points[0]), r, col, -1, cv2.LINE_AA, _SHIFT)
        if value:
            cv2.circle(lab, _pt(part.points[0]), r, value, -1, cv2.LINE_8, _SHIFT)
    else:
        raise ValueError(f"part {part.name!r}: unknown shape {part.shape!r} (capsule | poly | line | dot)")


def finish_image(img: np.ndarray, rng: np.random.Generator, dom: Domain) -> np.ndarray:
    """Apply the domain's camera: colour jitter, blur, sensor noise; returns ``uint8`` RGB.

    ``img`` (float32) is modified in place.
    """
    gain = rng.uniform(0.85, 1.15, size=3) * rng.uniform(0.85, 1.1)
    offset = rng.uniform(-12, 12) + 0.5  # + 0.5: round on the uint8 cast
    colour = np.concatenate([np.diag(gain), np.full((3, 1), offset)], axis=1).astype(np.float32)
    img = cv2.transform(img, colour)  # per-channel gain + offset in one pass
    sigma = rng.uniform(*dom.blur_sigma)
    if sigma > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    std = rng.uniform(*dom.noise_std)
    if std > 0:
        img = cv2.scaleAdd(np.ascontiguousarray(_noise(rng, img.shape[0], img.shape[1], 3)), float(std), img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
