"""What a sampled figure is: its drawable :class:`Part` list and the :class:`Figure` with its hidden landmarks
(see :mod:`multipose.data.synthetic.figures` for the canonical frame and the meaning of the fields)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Colour", "Figure", "Part"]

Colour = tuple[float, float, float]  # RGB, 0..255


@dataclass
class Part:
    """One drawable piece, in canonical units until :meth:`Figure.place` maps it to pixels.

    ``shape``: ``"capsule"`` (``points`` = the two axis end points, ``width`` = diameter),
    ``"poly"`` (filled polygon), ``"line"`` (open polyline of ``width``, a face detail) or
    ``"dot"`` (filled disc, ``points[0]`` centre, ``width`` diameter).
    ``label``: whether the piece owns its pixels in the part map (face details do not: they sit on
    the head and the head owns them).
    """

    name: str
    shape: str
    points: np.ndarray
    width: float
    colour: Colour
    label: bool = True
    shade: bool = True


@dataclass
class Figure:
    """A sampled figure; see the module docstring for the meaning of the fields."""

    kind: str  # "human" | "quadruped"
    category: str  # "person" or a species name
    landmarks: dict[str, np.ndarray]
    owners: dict[str, tuple[str, ...]]
    self_hidden: set[str]
    parts: list[Part]
    facing: int  # humans: +1 front view, -1 back view; quadrupeds: +1 towards +x, -1 towards -x
    face_visible: bool  # a face (eyes, nose, mouth) is drawn
    height_px: float = 0.0

    def place(self, centre: tuple[float, float], scale: float, rotation: float) -> Figure:
        """Return the figure mapped to pixels: mirror (back views / left-walking animals), rotate by
        ``rotation`` radians about the canonical origin, scale by ``scale`` px per unit, translate."""
        mirror = np.array([float(self.facing), 1.0])  # back views / animals walking to -x are mirrored
        c, s = math.cos(rotation), math.sin(rotation)
        # p -> (p * mirror) @ rot.T * scale + t, folded into one 2x2 matrix
        m = (np.array([[c, -s], [s, c]]) * mirror[None, :]).T * scale
        t = np.asarray(centre, dtype=np.float64)
        names = list(self.landmarks)
        pts = np.stack([self.landmarks[k] for k in names]) @ m + t
        parts = [
            Part(p.name, p.shape, p.points @ m + t, p.width * scale, p.colour, p.label, p.shade)
            for p in self.parts
        ]
        return Figure(
            kind=self.kind,
            category=self.category,
            landmarks=dict(zip(names, pts)),
            owners=self.owners,
            self_hidden=set(self.self_hidden),
            parts=parts,
            facing=self.facing,
            face_visible=self.face_visible,
            height_px=scale,
        )

    def extent(self, rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned ``(min_xy, max_xy)`` of all drawn geometry (widths included) after rotating by
        ``rotation`` radians (and mirroring, as :meth:`place` does) — in the figure's current units."""
        pts = np.concatenate([p.points for p in self.parts])
        pad = np.concatenate(
            [np.full(len(p.points), p.width / 2 if p.shape != "poly" else 0.0) for p in self.parts]
        )
        if rotation or self.facing < 0:
            c, s = math.cos(rotation), math.sin(rotation)
            m = (np.array([[c, -s], [s, c]]) * np.array([float(self.facing), 1.0])[None, :]).T
            pts = pts @ m
        return (pts - pad[:, None]).min(0), (pts + pad[:, None]).max(0)
