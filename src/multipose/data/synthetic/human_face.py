"""The human face: the iBUG-68 template of face landmarks on the head and the face details drawn over it."""

from __future__ import annotations

import math

import numpy as np

from multipose.data.synthetic.figure_record import Colour, Part
from multipose.data.synthetic.styles import HumanStyle, scale_colour

__all__ = ["FACE_TEMPLATE", "face_details", "face_template"]

# Face template: (azimuth alpha [rad], vertical offset y [head radii, +down], depth) per landmark.
# alpha > 0 is the figure's LEFT; iBUG-68 order (0-16 jaw from the figure's right, 17-21 right brow,
# 22-26 left brow, 27-30 nose bridge, 31-35 nostrils, 36-41 right eye, 42-47 left eye, 48-59 outer lip,
# 60-67 inner lip).
# ----------------------------------------------------------------------------------------------


def face_template() -> np.ndarray:
    pts: list[tuple[float, float, float]] = []
    for k in range(17):  # jaw, right -> chin -> left
        t = -1.0 + 2.0 * k / 16.0
        pts.append((1.32 * t, 0.02 + 0.88 * math.cos(t * math.pi / 2), 1.0))
    for i in range(5):  # right brow, outer -> inner
        a = -0.78 + 0.6 * i / 4
        pts.append((a, -0.24 - 0.06 * math.sin(math.pi * (i + 0.5) / 5), 1.0))
    for i in range(5):  # left brow, inner -> outer
        a = 0.18 + 0.6 * i / 4
        pts.append((a, -0.24 - 0.06 * math.sin(math.pi * (4.5 - i) / 5), 1.0))
    for i in range(4):  # nose bridge, top -> tip
        pts.append((0.0, -0.06 + 0.12 * i, 1.0 + 0.05 * i))
    for i in range(5):  # nostrils, right -> left
        a = -0.22 + 0.11 * i
        pts.append((a, 0.38 + 0.03 * (1 - abs(i - 2) / 2), 1.04))

    def eye(ca: float) -> list[tuple[float, float, float]]:
        # corner at smaller alpha, two upper-lid points, other corner, two lower-lid points; for the right
        # eye the first corner is the outer one (iBUG 36), for the left eye the inner one (iBUG 42).
        w, h, cy = 0.17, 0.06, 0.02
        seq = [(-w, 0.0), (-w / 3, -h), (w / 3, -h), (w, 0.0), (w / 3, h * 0.8), (-w / 3, h * 0.8)]
        return [(ca + dx, cy + dy, 1.0) for dx, dy in seq]

    pts += eye(-0.42)  # right eye
    pts += eye(0.42)  # left eye
    # outer lip: 48 right corner, 49-53 upper lip to 54 left corner, 55-59 lower lip back
    mw, my = 0.34, 0.62
    upper = [(-mw, 0.0), (-0.2, -0.06), (-0.08, -0.08), (0.0, -0.065), (0.08, -0.08), (0.2, -0.06), (mw, 0.0)]
    lower = [(0.2, 0.07), (0.1, 0.1), (0.0, 0.105), (-0.1, 0.1), (-0.2, 0.07)]
    pts += [(a, my + d, 1.0) for a, d in upper + lower]
    inner_u = [(-0.26, 0.0), (-0.1, -0.025), (0.0, -0.02), (0.1, -0.025), (0.26, 0.0)]
    inner_l = [(0.1, 0.03), (0.0, 0.035), (-0.1, 0.03)]
    pts += [(a, my + d, 1.0) for a, d in inner_u + inner_l]
    arr = np.array(pts, dtype=np.float64)
    assert arr.shape == (68, 3)
    return arr


FACE_TEMPLATE = face_template()


def face_details(lm: dict[str, np.ndarray], hidden: set[str], b: float, style: HumanStyle) -> list[Part]:
    """Eyes, brows, nose and mouth drawn on the head (no own labels; only the parts facing us)."""
    out: list[Part] = []
    dark = (25.0, 20.0, 20.0)

    def seen(*idx: int) -> bool:
        return all(f"face_{i}" not in hidden for i in idx)

    def points(idx) -> np.ndarray:
        return np.stack([lm[f"face_{i}"] for i in idx])

    def detail(name: str, shape: str, pts: np.ndarray, width: float, colour: Colour) -> None:
        out.append(Part(name, shape, pts, width, colour, label=False, shade=False))

    for idx, eye in ((range(36, 42), "r_eye"), (range(42, 48), "l_eye")):
        if seen(*idx):
            detail(f"{eye}_white", "poly", points(idx), 0.0, (235.0, 235.0, 230.0))
            detail(f"{eye}_pupil", "dot", lm[eye][None], b * 0.13, dark)
    for idx in (range(17, 22), range(22, 27)):
        if seen(*idx):
            detail("brow", "line", points(idx), b * 0.07, scale_colour(style.hair, 0.7))
    if seen(27, 30, 31, 35):
        detail("nose_ridge", "line", points((27, 30)), b * 0.06, scale_colour(style.skin, 0.72))
        detail("nostrils", "line", points(range(31, 36)), b * 0.07, scale_colour(style.skin, 0.55))
    if seen(48, 51, 54, 57):
        detail("mouth", "poly", points([*range(48, 60), 48]), 0.0, (165.0, 60.0, 65.0))
    return out
