"""Parallel coordinates as inline SVG (no JavaScript needed to draw it, no external file).

One vertical axis per column (swept keys first, then metrics); one polyline per job through its values. Numeric
axes are linear, or logarithmic when every value is positive and they span a factor of 20 or more (loss weights
such as α/β/γ); text values (config group options) get a categorical axis. A job without a value on an axis
(a failed job's metrics) is drawn dashed and grey up to its last known value. Lines are coloured by the colour
column (the objective) on a blue-to-yellow ramp, and each carries ``data-job`` for the page's hover highlighting
and a ``<title>`` tooltip with its values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["Axis", "build_axes", "colour_ramp", "parallel_coordinates_svg"]

#: viridis-like ramp (dark blue -> green -> yellow), interpolated linearly
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_FAILED = "#9a9a9a"


def colour_ramp(t: float) -> str:
    """``t`` in [0, 1] -> ``#rrggbb`` on the blue-to-yellow ramp (NaN -> grey)."""
    if not math.isfinite(t):
        return _FAILED
    t = min(1.0, max(0.0, t)) * (len(_RAMP) - 1)
    i = min(int(t), len(_RAMP) - 2)
    f = t - i
    rgb = [round(a + (b - a) * f) for a, b in zip(_RAMP[i], _RAMP[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


@dataclass
class Axis:
    """One axis: ``kind`` is ``linear``, ``log`` or ``category``; ``position(value)`` maps to [0, 1] (0 at the
    bottom) or ``None`` when the job has no value there."""

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 1.0
    categories: tuple[str, ...] = ()

    def position(self, value: Any) -> float | None:
        if value is None or value == "":
            return None
        if self.kind == "category":
            text = str(value)
            if text not in self.categories:
                return None
            n = len(self.categories)
            return 0.5 if n == 1 else self.categories.index(text) / (n - 1)
        x = _number(value)
        if x is None or not math.isfinite(x) or (self.kind == "log" and x <= 0):
            return None
        a, b, v = (
            (math.log10(self.lo), math.log10(self.hi), math.log10(x))
            if self.kind == "log"
            else (self.lo, self.hi, x)
        )
        return 0.5 if b <= a else (v - a) / (b - a)

    def ticks(self) -> list[tuple[float, str]]:
        """``[(position, label)]`` of a few labelled values on the axis."""
        if self.kind == "category":
            return [(self.position(c) or 0.0, c) for c in self.categories]
        if self.hi <= self.lo:
            return [(0.5, _short(self.lo))]
        if self.kind == "log":
            a, b = math.log10(self.lo), math.log10(self.hi)
            decades = [10.0**e for e in range(math.ceil(a - 1e-9), math.floor(b + 1e-9) + 1)]
            values = decades if 2 <= len(decades) <= 6 else [self.lo, 10 ** ((a + b) / 2), self.hi]
        else:
            values = [self.lo + (self.hi - self.lo) * f for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
        return [(self.position(v) or 0.0, _short(v)) for v in values]


def _short(value: float) -> str:
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}".replace("e-0", "e-").replace("e+0", "e")


def build_axes(names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[Axis]:
    """An axis per name from the values the rows hold (numbers -> linear/log, anything else -> categories)."""
    axes = []
    for name in names:
        values = [r.get(name) for r in rows if r.get(name) not in (None, "")]
        numbers = [_number(v) for v in values]
        if values and all(x is not None for x in numbers):
            finite = [x for x in numbers if x is not None and math.isfinite(x)]
            if not finite:
                axes.append(Axis(name, "linear", 0.0, 1.0))
                continue
            lo, hi = min(finite), max(finite)
            kind = "log" if lo > 0 and hi / lo >= 20 else "linear"
            axes.append(Axis(name, kind, lo, hi))
        else:
            axes.append(Axis(name, "category", categories=tuple(dict.fromkeys(str(v) for v in values))))
    return axes


def parallel_coordinates_svg(
    axes: Sequence[Axis],
    rows: Sequence[Mapping[str, Any]],
    colour_by: str | None = None,
    height: int = 360,
    axis_gap: int = 170,
    element_id: str = "parcoords",
) -> str:
    """The chart as an ``<svg>`` string. ``rows`` are ``{"job": id, axis name: value, ...}``; ``colour_by``
    names the column that colours the lines (higher = yellower); rows whose ``status`` is not ``ok`` are drawn
    dashed grey."""
    left, right, top, bottom = 70, 70, 48, 40
    width = left + right + axis_gap * max(1, len(axes) - 1)
    plot_h = height - top - bottom
    colour_axis = next((a for a in axes if a.name == colour_by), None)

    def x_of(i: int) -> float:
        return left + i * axis_gap if len(axes) > 1 else width / 2

    def y_of(p: float) -> float:
        return top + (1.0 - p) * plot_h

    out = [
        f'<svg id="{escape(element_id)}" class="parcoords" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="parallel coordinates of the sweep">'
    ]
    # lines first, axes on top
    for row in rows:
        points = []
        for i, axis in enumerate(axes):
            p = axis.position(row.get(axis.name))
            if p is None:
                break  # a missing value ends the line (failed jobs have no metrics)
            points.append(f"{x_of(i):.1f},{y_of(p):.1f}")
        if not points:
            continue
        ok = str(row.get("status", "ok")) == "ok"
        if ok and colour_axis is not None:
            p = colour_axis.position(row.get(colour_axis.name))
            colour = colour_ramp(float("nan") if p is None else p)
        else:
            colour = _FAILED if not ok else colour_ramp(0.5)
        tip = "\n".join(
            [f"job {row.get('job')}" + ("" if ok else f" ({row.get('status')})")]
            + [f"{a.name} = {_tip(row.get(a.name))}" for a in axes]
        )
        dash = "" if ok else ' stroke-dasharray="5,4"'
        if len(points) == 1:
            x, y = points[0].split(",")
            out.append(
                f'<circle class="pc-line" data-job="{escape(str(row.get("job")))}" cx="{x}" cy="{y}" r="4" '
                f'fill="{colour}"><title>{escape(tip)}</title></circle>'
            )
        else:
            out.append(
                f'<polyline class="pc-line" data-job="{escape(str(row.get("job")))}" points="{" ".join(points)}" '
                f'fill="none" stroke="{colour}" stroke-width="2.5" stroke-opacity="0.85"{dash}>'
                f"<title>{escape(tip)}</title></polyline>"
            )
    for i, axis in enumerate(axes):
        x = x_of(i)
        out.append(f'<line class="pc-axis" x1="{x}" y1="{top}" x2="{x}" y2="{top + plot_h}" stroke="#333"/>')
        label = _axis_label(axis.name) + (" (log)" if axis.kind == "log" else "")
        out.append(
            f'<text class="pc-label" x="{x}" y="{top - 22}" text-anchor="middle" font-size="12" '
            f'font-weight="bold"><title>{escape(axis.name)}</title>{escape(label)}</text>'
        )
        for p, text in axis.ticks():
            y = y_of(p)
            out.append(f'<line x1="{x - 4}" y1="{y:.1f}" x2="{x}" y2="{y:.1f}" stroke="#333"/>')
            out.append(
                f'<text x="{x - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#444">'
                f"{escape(text)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def _tip(value: Any) -> str:
    x = _number(value)
    if x is None:
        return "–" if value in (None, "") else str(value)
    return "–" if not math.isfinite(x) else _short(x)


def _axis_label(name: str) -> str:
    """``val/<ds>/<metric>`` -> ``<ds> <metric>`` (the full name is the label's tooltip)."""
    parts = name.split("/")
    return " ".join(parts[1:]) if len(parts) >= 3 and parts[0] == "val" else name
