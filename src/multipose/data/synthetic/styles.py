"""Colours of a figure (they come from the dataset's visual domain) and the shading of its sides."""

from __future__ import annotations

from dataclasses import dataclass

from multipose.data.synthetic.figure_record import Colour

__all__ = ["AnimalStyle", "HumanStyle", "scale_colour", "tint_left"]


@dataclass
class HumanStyle:
    skin: Colour
    hair: Colour
    shirt: Colour
    trousers: Colour
    shoes: Colour
    long_sleeves: bool
    left_tint: float = 0.82  # left-side clothes are this much darker (mild, like real clothes)


@dataclass
class AnimalStyle:
    fur: Colour
    belly: Colour
    far_shade: float = 0.72  # far-side legs are darker (in the body's shadow)


def scale_colour(c: Colour, k: float) -> Colour:
    return tuple(float(min(255.0, max(0.0, v * k))) for v in c)  # type: ignore[return-value]


def tint_left(c: Colour, k: float) -> Colour:
    """Left-side garment colour: darker by ``k`` with a slight blue cast, so sides differ mildly."""
    r, g, b = scale_colour(c, k)
    return (r, g, min(255.0, b + 12.0))
