"""The offline sweep report: ``python -m multipose.report <multirun dir>`` writes ``<multirun dir>/report.html``,
one self-contained page (parallel coordinates over the swept keys, per-dataset metric table, learning curves from
the CSV logs, each job's pictures), atomically. :func:`check_in_browser` loads a page in headless Chromium."""

from __future__ import annotations

from pathlib import Path

from multipose.report.browser import BrowserCheck, check_in_browser, find_browser

__all__ = ["REPORT_FILE", "BrowserCheck", "check_in_browser", "find_browser", "write_report"]

REPORT_FILE = "report.html"


def write_report(sweep_dir: str | Path, out: str | Path | None = None, max_image_width: int = 1400) -> Path:
    """Write the report of the multirun directory ``sweep_dir`` to ``out`` (default
    ``<sweep_dir>/report.html``) through a temporary file and a rename; returns the path."""
    from multipose.report.page import build_page
    from multipose.utils.run import write_text_atomic
    from multipose.utils.sweep import read_sweep

    sweep = read_sweep(sweep_dir)
    path = Path(out) if out is not None else sweep.dir / REPORT_FILE
    return write_text_atomic(path, build_page(sweep, max_image_width=max_image_width))
