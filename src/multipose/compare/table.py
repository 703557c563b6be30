"""The comparison table from the finished runs' ``metrics.json``: rows per key, the seed spread as noise floor,
Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Row", "csv_report", "markdown_report", "summarize"]


#: the last part of a key that the Markdown table shows in the method section (the CSV has every key)
HEADLINE_METRICS = ("AP", "PCKh@0.5", "PCK@0.2", "NME", "CHD", "CHD_bc")
SECTIONS = ("own", "cross", "consistency", "method", "other")
#: COCO detail metrics left out of the Markdown table's method section
DETAIL_METRICS = frozenset({"AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl", "OKS"})


@dataclass
class Row:
    section: str
    key: str
    baseline_key: str | None
    base: list[float] = field(default_factory=list)
    method: list[float] = field(default_factory=list)

    @staticmethod
    def _mean(v: list[float]) -> float:
        return sum(v) / len(v) if v else math.nan

    @staticmethod
    def _spread(v: list[float]) -> float:
        return max(v) - min(v) if len(v) >= 2 else math.nan

    @property
    def base_mean(self) -> float:
        return self._mean(self.base)

    @property
    def method_mean(self) -> float:
        return self._mean(self.method)

    @property
    def diff(self) -> float:
        return self.method_mean - self.base_mean

    @property
    def base_spread(self) -> float:
        return self._spread(self.base)

    @property
    def method_spread(self) -> float:
        return self._spread(self.method)

    @property
    def noise(self) -> float:
        """The larger of the two arms' seed spreads; an arm with fewer than two seeds has none, so the other arm's
        spread counts alone (NaN when neither arm has two seeds)."""
        known = [s for s in (self.base_spread, self.method_spread) if not math.isnan(s)]
        return max(known) if known else math.nan

    @property
    def within_noise(self) -> bool | None:
        """True if ``|diff|`` is not larger than the noise floor; None when either is unknown."""
        d, n = self.diff, self.noise
        if math.isnan(d) or math.isnan(n):
            return None
        return abs(d) <= n


def _section(key: str, primary: frozenset[str]) -> str | None:
    parts = key.split("/")
    if key == "val/score":
        return "own"
    if parts[0] != "val" or len(parts) < 3:
        return None
    if len(parts) == 3:
        return "own" if parts[2] in primary else "other"
    if parts[2] == "cross" and len(parts) == 5:
        return "cross" if parts[4] in primary else "other"
    if parts[2] == "consistency":
        return "consistency"
    return "other"


def _baseline_counterpart(key: str, base_keys: set[str]) -> str | None:
    """The baseline key a method-only variant key is compared with: ``val/<ds>/<variant>/<m>`` ->
    ``val/<ds>/<m>``, ``val/<ds>/cross/<head>/<variant>/<m>`` -> ``val/<ds>/cross/<head>/<m>``."""
    parts = key.split("/")
    if parts[0] != "val":
        return None
    cand = None
    if len(parts) == 4 and parts[2] not in ("cross", "consistency"):
        cand = "/".join([*parts[:2], parts[3]])
    elif len(parts) == 6 and parts[2] == "cross":
        cand = "/".join([*parts[:4], parts[5]])
    return cand if cand in base_keys else None


def _values(runs: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for m in runs:
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def summarize(
    baseline: Sequence[Mapping[str, Any]], method: Sequence[Mapping[str, Any]], primary: Sequence[str] = ()
) -> list[Row]:
    """Rows of the comparison from the ``metrics.json`` dicts of the finished runs of each arm.

    Keys both arms have: ``own`` (each dataset's primary metric and ``val/score``), ``cross``
    (``val/<ds>/cross/<head>/<primary>``), ``consistency`` (``val/<ds>/consistency/*``), ``other`` (every
    other ``val/`` key). Keys only the method runs have go to ``method``; a variant key
    (``val/<ds>/<variant>/<m>``) is compared with the baseline's plain key (``val/<ds>/<m>``), any other
    (residuals, ``train/<bridge>/...``) has no baseline. ``primary``: the metric names counted as primary
    (default: :data:`multipose.evaluation.mix.PRIMARY_METRIC`).
    """
    if not primary:
        from multipose.evaluation.mix import PRIMARY_METRIC

        primary = tuple(PRIMARY_METRIC.values())
    prim = frozenset(primary)
    base_keys = set().union(*(set(m) for m in baseline)) if baseline else set()
    method_keys = set().union(*(set(m) for m in method)) if method else set()
    rows: list[Row] = []
    for key in sorted(base_keys & method_keys):
        section = _section(key, prim)
        if section is not None:
            rows.append(Row(section, key, key, _values(baseline, key), _values(method, key)))
    for key in sorted(method_keys - base_keys):
        if not key.startswith(("val/", "train/")):
            continue
        counterpart = _baseline_counterpart(key, base_keys)
        base_vals = _values(baseline, counterpart) if counterpart else []
        rows.append(Row("method", key, counterpart, base_vals, _values(method, key)))
    rows = [r for r in rows if r.base or r.method]
    order = {s: i for i, s in enumerate(SECTIONS)}
    return sorted(rows, key=lambda r: (order[r.section], r.key))


def _fmt(x: float, signed: bool = False) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _flag(row: Row) -> str:
    w = row.within_noise
    return "n/a" if w is None else ("within noise" if w else "**beyond noise**")


SECTION_TITLES = {
    "own": "Own dataset (each head on its own validation set)",
    "cross": "Cross-skeleton AP (a head on another set's images, hidden ground truth)",
    "consistency": "Cross-head consistency (lower is better)",
    "method": "Method's own keys (baseline column: the baseline's plain metric for variants, else none)",
}


def _headline(row: Row) -> bool:
    """Whether a method-section row goes into the Markdown table: ``val/`` keys only; variants of a baseline
    metric when the metric is a headline one, method-only metrics unless they are COCO details."""
    if row.section != "method":
        return True
    if not row.key.startswith("val/"):
        return False
    last = row.key.split("/")[-1]
    return last in HEADLINE_METRICS if row.baseline_key else last not in DETAIL_METRICS


def markdown_report(rows: Sequence[Row], header: Sequence[str], method_name: str) -> str:
    """The comparison as Markdown: ``header`` lines, then one table per section (the ``other`` section and
    non-headline method keys only go to the CSV)."""
    lines = [f"# Comparison: baseline vs {method_name}", "", *header, ""]
    cols = (
        "| key | baseline | "
        + method_name
        + " | diff | spread baseline | spread "
        + method_name
        + " | verdict |"
    )
    for section, title in SECTION_TITLES.items():
        sel = [r for r in rows if r.section == section and _headline(r)]
        if not sel:
            continue
        lines += [f"## {title}", "", cols, "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in sel:
            key = r.key if r.baseline_key in (None, r.key) else f"{r.key} (vs {r.baseline_key})"
            lines.append(
                f"| {key} | {_fmt(r.base_mean)} | {_fmt(r.method_mean)} | {_fmt(r.diff, True)} | "
                f"{_fmt(r.base_spread)} | {_fmt(r.method_spread)} | {_flag(r)} |"
            )
        lines.append("")
    lines.append(
        "diff = method mean − baseline mean; spread = max − min over the seeds of an arm (|seed0 − seed1| for two "
        "seeds); a difference not larger than the larger spread is within the noise floor."
    )
    return "\n".join(lines) + "\n"


def csv_report(rows: Sequence[Row], seeds: Sequence[int] = ()) -> str:
    """Every row, with per-seed values (in the order of the finished runs) for each arm."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "section",
            "key",
            "baseline_key",
            "baseline_mean",
            "method_mean",
            "diff",
            "baseline_spread",
            "method_spread",
            "noise_floor",
            "within_noise",
            "baseline_values",
            "method_values",
        ]
    )
    for r in rows:
        w.writerow(
            [
                r.section,
                r.key,
                r.baseline_key or "",
                *(
                    repr(x)
                    for x in (r.base_mean, r.method_mean, r.diff, r.base_spread, r.method_spread, r.noise)
                ),
                "" if r.within_noise is None else str(r.within_noise).lower(),
                " ".join(repr(v) for v in r.base),
                " ".join(repr(v) for v in r.method),
            ]
        )
    return buf.getvalue()
