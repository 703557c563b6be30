"""Drawing poses: skeleton links and keypoints coloured by body side (left = blue, right = orange,
centre = green). Used by the browse tool (``multipose.data.browse``) and by ``python -m multipose.predict --draw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

__all__ = ["COLOURS", "draw_pose", "keypoint_sides"]

#: RGB colours of the drawing.
COLOURS: dict[str, tuple[int, int, int]] = {
    "left": (30, 144, 255),
    "right": (255, 140, 0),
    "centre": (50, 205, 50),
    "decoded": (255, 0, 255),
    "banner": (0, 0, 0),
    "text": (255, 255, 255),
}


def keypoint_sides(skeleton: Any) -> list[str]:
    """``"left"``, ``"right"`` or ``"centre"`` per keypoint, from the name (or semantic tag) tokens."""
    sides = []
    for name, tag in zip(skeleton.keypoints, skeleton.semantic):
        tokens = set(str(name).lower().replace("-", "_").split("_")) | set(str(tag).lower().split("_"))
        if "left" in tokens or "l" in tokens:
            sides.append("left")
        elif "right" in tokens or "r" in tokens:
            sides.append("right")
        else:
            sides.append("centre")
    return sides


def _pixel(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Any,
    visible: np.ndarray | None = None,
    thickness: int = 2,
    radius: int = 3,
    to_pixel: Callable[[np.ndarray], tuple[int, int]] = _pixel,
) -> np.ndarray:
    """Draw one pose in place on ``image`` (``uint8 [H, W, 3]`` RGB) and return it.

    ``keypoints [K, 2+]`` in the image's pixels; ``visible [K]`` bool selects the joints drawn (default all);
    a link is drawn when both ends are visible, in their side's colour (centre when the sides differ).
    ``to_pixel`` maps a point to integer drawing coordinates (e.g. for a zoomed tile).
    """
    kp = np.asarray(keypoints, np.float32)
    vis = np.ones(kp.shape[0], bool) if visible is None else np.asarray(visible, bool)
    sides = keypoint_sides(skeleton)
    for a, b in skeleton.links:
        if vis[a] and vis[b]:
            side = sides[a] if sides[a] == sides[b] else "centre"
            cv2.line(image, to_pixel(kp[a]), to_pixel(kp[b]), COLOURS[side], thickness, cv2.LINE_AA)
    for j in np.flatnonzero(vis):
        cv2.circle(image, to_pixel(kp[j]), radius, COLOURS[sides[j]], -1, cv2.LINE_AA)
    return image
