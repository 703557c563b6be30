"""2D vector helpers of the figures' canonical frame (``x`` right, ``y`` down)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ellipse_poly", "rot", "unit"]


def rot(v: np.ndarray, ang: float) -> np.ndarray:
    """Rotate a 2D vector by ``ang`` radians (clockwise on screen, since ``y`` points down)."""
    c, s = math.cos(ang), math.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]], dtype=np.float64)


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])


def ellipse_poly(
    centre: np.ndarray,
    ax_u: np.ndarray,
    ax_v: np.ndarray,
    n: int = 28,
    start: float = 0.0,
    stop: float = 2 * math.pi,
) -> np.ndarray:
    """Polygon of the ellipse ``centre + cos(t) * ax_u + sin(t) * ax_v`` for ``t`` in ``[start, stop]``."""
    t = np.linspace(start, stop, n, endpoint=(stop - start) < 2 * math.pi - 1e-6)
    return centre[None] + np.cos(t)[:, None] * ax_u[None] + np.sin(t)[:, None] * ax_v[None]
