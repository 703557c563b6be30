"""The human hand: the 21 COCO-WholeBody hand landmarks placed at a wrist, and the hand's drawable parts."""

from __future__ import annotations

import math

import numpy as np

from multipose.data.synthetic.figure_record import Colour, Part
from multipose.data.synthetic.vec2d import rot, unit

__all__ = ["FINGERS", "hand_parts"]

# Finger names in COCO-WholeBody hand order (after the root/wrist).
FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")


def hand_parts(
    rng: np.random.Generator,
    side: str,
    sgn: float,
    wrist: np.ndarray,
    fa_dir: np.ndarray,
    prop: float,
    girth: float,
    skin: Colour,
    put,
) -> list[Part]:
    """Place the 21 COCO-WholeBody hand landmarks (root, then 4 per finger) and return hand parts."""
    U = rng.uniform
    d = unit(rot(fa_dir, math.radians(U(-30.0, 30.0))))
    lat = rot(d, -sgn * math.pi / 2)  # lateral when the arm hangs (palms forward: thumbs out)
    if U() < 0.25:
        lat = -lat  # palm turned backwards
    L = 0.105 * prop
    put(f"{side}_hand_root", wrist, (f"{side}_forearm", f"{side}_hand"))
    curl_sign = 1 if U() < 0.5 else -1
    grip = U(0.0, 1.0) ** 2  # 0 = open hand, 1 = fist-like
    bases = {"forefinger": 0.10, "middle_finger": 0.035, "ring_finger": -0.03, "pinky_finger": -0.09}
    lengths = {"forefinger": 0.95, "middle_finger": 1.0, "ring_finger": 0.94, "pinky_finger": 0.76}
    spread = {"forefinger": 0.12, "middle_finger": 0.03, "ring_finger": -0.06, "pinky_finger": -0.16}
    palm_pts = [wrist + lat * L * 0.1, wrist - lat * L * 0.1]
    finger_parts: list[Part] = []
    hand_own = (f"{side}_hand",)
    for fname in FINGERS[1:]:
        mcp = wrist + d * L * 0.47 + lat * L * bases[fname]
        fd = rot(d, -sgn * spread[fname] * (1 if lat @ rot(d, -sgn * math.pi / 2) > 0 else -1))
        pts = [mcp]
        seg = [0.25, 0.16, 0.12]
        curl = math.radians(U(5.0, 30.0) + 70.0 * grip)
        for k, sl in enumerate(seg):
            fd = rot(fd, curl_sign * curl * (0.6 if k == 0 else 1.0))
            pts.append(pts[-1] + fd * L * sl * lengths[fname])
        for k, p in enumerate(pts):
            put(f"{side}_{fname}{k + 1}", p, hand_own)
        finger_parts.append(Part(f"{side}_hand", "line", np.stack(pts), 0.017 * girth, skin, shade=False))
    # thumb: CMC near the wrist on the lateral side, then MCP, IP, tip
    td = unit(rot(d, 0.0) * 0.55 + lat * 0.8)
    cmc = wrist + d * L * 0.1 + lat * L * 0.12
    pts = [cmc]
    for k, sl in enumerate([0.2, 0.15, 0.13]):
        td = rot(td, curl_sign * math.radians(U(0.0, 25.0) + 30.0 * grip) * (0.5 if k == 0 else 1.0))
        pts.append(pts[-1] + td * L * sl)
    for k, p in enumerate(pts):
        put(f"{side}_thumb{k + 1}", p, hand_own)
    finger_parts.append(Part(f"{side}_hand", "line", np.stack(pts), 0.019 * girth, skin, shade=False))
    palm_pts += [
        wrist + d * L * 0.47 + lat * L * bases["pinky_finger"] * 1.05,
        wrist + d * L * 0.47 + lat * L * bases["forefinger"] * 1.05,
    ]
    palm = np.stack([palm_pts[1], palm_pts[2], palm_pts[3], palm_pts[0]])
    return [Part(f"{side}_hand", "poly", palm, 0.0, skin)] + finger_parts
