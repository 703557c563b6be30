"""The offline sweep report: one self-contained HTML page (inline CSS, SVG, a small inline script, images as data
URIs; no network access needed to view it).

Sections: the parallel coordinates over the swept keys and the metrics (:mod:`multipose.report.parallel`), the
per-dataset metric table (the rows of ``sweep_summary.csv``, sortable), learning curves of every job from their CSV
logs (drawn with :func:`multipose.viz.line_chart`), and each job's ``pictures/`` (``PosePictures``' learning
curves, validation crops per dataset, every head on one crop, bridge figures).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from html import escape
from typing import Any

import cv2
import numpy as np

from multipose.report.parallel import build_axes, parallel_coordinates_svg
from multipose.utils.sweep import Job, Sweep, lower_is_better, summary_table
from multipose.viz.plot import line_chart, smooth

__all__ = ["build_page", "curve_images", "image_data_uri"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1600px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px} .scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12px} th,td{border:1px solid #ddd;padding:3px 7px;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#a33} tr.best td{background:#fff8d6} tr.hl td{background:#dbeafe}
.pc-line.hl{stroke-width:5;stroke-opacity:1} .pc-line:hover{stroke-width:5}
img{max-width:100%;border:1px solid #eee;margin:4px 0} figure{margin:6px 0} figcaption{font-size:12px;color:#555}
details{margin:6px 0;border:1px solid #e4e4e4;border-radius:4px;padding:4px 8px} summary{cursor:pointer}
#js-errors{background:#fee;border:1px solid #c00;padding:6px;color:#900}
.curves{display:flex;flex-wrap:wrap;gap:8px}
"""

# caught before the page's own script runs, so a failing script shows up in the page (and in the browser check)
_ERROR_HOOK = """
window.addEventListener('error', function (e) {
  var box = document.getElementById('js-errors');
  if (!box) { return; }
  box.hidden = false;
  var item = document.createElement('div');
  item.className = 'js-error';
  item.textContent = String(e.message || e);
  box.appendChild(item);
});
"""

_SCRIPT = """
(function () {
  function highlight(job, on) {
    document.querySelectorAll('[data-job="' + job + '"]').forEach(function (el) {
      el.classList.toggle('hl', on);
    });
  }
  document.querySelectorAll('[data-job]').forEach(function (el) {
    var job = el.getAttribute('data-job');
    el.addEventListener('mouseenter', function () { highlight(job, true); });
    el.addEventListener('mouseleave', function () { highlight(job, false); });
  });
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('data-sort') !== 'asc';
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute('data-value'), y = b.cells[col].getAttribute('data-value');
          var fx = parseFloat(x), fy = parseFloat(y);
          var cmp = (isNaN(fx) || isNaN(fy)) ? String(x).localeCompare(String(y)) : fx - fy;
          if (isNaN(fx) !== isNaN(fy)) { cmp = isNaN(fx) ? 1 : -1; return cmp; }
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-sort'); });
        th.setAttribute('data-sort', asc ? 'asc' : 'desc');
      });
    });
  });
  document.body.setAttribute('data-ready', '1');
})();
"""


def image_data_uri(image: np.ndarray | bytes, max_width: int = 1400, prefer_png: bool = False) -> str:
    """``data:`` URI of an RGB ``uint8 [H, W, 3]`` image (or encoded PNG/JPEG bytes), downscaled to
    ``max_width``; JPEG unless ``prefer_png`` (line charts stay sharp as PNG)."""
    if isinstance(image, (bytes, bytearray)):
        decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError("not a PNG/JPEG image")
        image = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if prefer_png:
        ok, data = cv2.imencode(".png", bgr)
        kind = "png"
    else:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 88])
        kind = "jpeg"
    if not ok:
        raise ValueError("could not encode the image")
    return f"data:image/{kind};base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _label(job: Job) -> str:
    return f"job {job.num}"


def curve_images(sweep: Sweep, smoothing: float = 0.6) -> dict[str, np.ndarray]:
    """Learning curves of every job from their CSV logs, one chart per quantity: the objective, the training
    loss (log scale, smoothed), each dataset's primary validation metric. Charts without any data are left out."""
    charts: dict[str, np.ndarray] = {}

    def series(key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for job in sweep.jobs:
            points = job.history.get(key) or []
            if points:
                out[_label(job)] = (np.array([p[0] for p in points]), np.array([p[1] for p in points]))
        return out

    def unit(s: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float] | None:
        values = np.concatenate([v for _, v in s.values()]) if s else np.zeros(0)
        values = values[np.isfinite(values)]
        return (0.0, 1.0) if values.size and values.min() >= 0 and values.max() <= 1 else None

    obj = series(sweep.objective)
    if obj:
        charts[sweep.objective] = line_chart(obj, f"{sweep.objective} per job", y_range=unit(obj))
    loss = series("train/loss")
    if loss:
        smoothed = {k: (x, smooth(y, smoothing)) for k, (x, y) in loss.items()}
        charts["train/loss"] = line_chart(smoothed, "train/loss per job (smoothed)", log_y=True, raw=loss)
    for name, key in sweep.datasets.items():
        if key == sweep.objective:
            continue
        s = series(key)
        if s:
            charts[key] = line_chart(s, f"{name}: {key.rsplit('/', 1)[-1]} per job", y_range=unit(s))
    return charts


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = (
            "–"
            if math.isnan(value)
            else (f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}")
        )
        data = "" if math.isnan(value) else repr(value)
        return f'<td class="num" data-value="{escape(data)}">{escape(text)}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-value="{value}">{value}</td>'
    return f'<td data-value="{escape(str(value))}">{escape(str(value))}</td>'


def _metric_table(sweep: Sweep) -> str:
    header, rows = summary_table(sweep)
    best = sweep.best_job()
    out = ['<table id="metrics-table" class="sortable"><thead><tr>']
    out += [f'<th title="click to sort">{escape(h)}</th>' for h in header]
    out.append("</tr></thead><tbody>")
    for job, row in zip(sweep.jobs, rows):
        cls = "failed" if job.status != "ok" else ("best" if job is best else "")
        out.append(f'<tr data-job="{job.num}" class="{cls}">' + "".join(_cell(v) for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _parallel(sweep: Sweep) -> str:
    metric_keys = [sweep.objective, *(k for k in sweep.datasets.values() if k != sweep.objective)]
    rows = []
    for job in sweep.jobs:
        row: dict[str, Any] = {"job": job.num, "status": job.status}
        row.update({k: job.overrides.get(k) for k in sweep.swept})
        row.update({k: job.final(k) for k in metric_keys})
        rows.append(row)
    axes = build_axes([*sweep.swept, *metric_keys], rows)
    note = (
        f"Each line is a job; colour = final {escape(sweep.objective)} "
        f"({'lower' if lower_is_better(sweep.objective) else 'higher'} is better: "
        f"{'blue' if lower_is_better(sweep.objective) else 'yellow'}); dashed grey = failed or unfinished. "
        "Hover a line or a table row to highlight the job."
    )
    svg = parallel_coordinates_svg(axes, rows, colour_by=sweep.objective)
    return f'<p class="meta">{note}</p><div class="scroll">{svg}</div>'


def _pictures(job: Job, swept_keys: list[str], max_width: int) -> str:
    folder = job.dir / "pictures"
    files = (
        sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if folder.is_dir()
        else []
    )
    swept = ", ".join(f"{k}={job.overrides[k]}" for k in swept_keys if k in job.overrides)
    head = f"job {job.num} ({job.status})" + (f": {escape(swept)}" if swept else "")
    if not files:
        body = '<p class="meta">no pictures (callbacks.pictures off, or the job failed before validating)</p>'
        if job.error:
            body += f'<pre class="error">{escape(job.error)}</pre>'
    else:
        figs = []
        for path in files:
            try:
                uri = image_data_uri(path.read_bytes(), max_width, prefer_png=path.stem == "learning_curves")
            except (OSError, ValueError) as err:
                figs.append(f'<p class="meta">{escape(path.name)}: {escape(str(err))}</p>')
                continue
            figs.append(
                f'<figure><img class="picture" alt="{escape(path.stem)} of job {job.num}" src="{uri}">'
                f"<figcaption>{escape(path.name)}</figcaption></figure>"
            )
        body = "".join(figs)
    return f'<details class="job-pictures" data-job="{job.num}"><summary>{head}</summary>{body}</details>'


def build_page(sweep: Sweep, title: str | None = None, max_image_width: int = 1400) -> str:
    """The report of ``sweep`` as one HTML string."""
    title = title or f"Sweep {sweep.dir.name}"
    best = sweep.best_job()
    meta = (
        f"{escape(str(sweep.dir))} · {len(sweep.jobs)} jobs, {len(sweep.failed)} failed or unfinished · "
        f"swept: {escape(', '.join(sweep.swept) or 'nothing varies')} · objective "
        f"<code>{escape(sweep.objective)}</code>"
        + (f" · best: job {best.num} ({best.final(sweep.objective):.4f})" if best else "")
    )
    curves = curve_images(sweep)
    curve_html = (
        "".join(
            f'<figure><img class="curve" alt="{escape(k)}" src="{image_data_uri(img, max_image_width, prefer_png=True)}">'
            f"<figcaption>{escape(k)}</figcaption></figure>"
            for k, img in curves.items()
        )
        or '<p class="meta">no CSV logs in the job directories (logger=csv or logger=many writes them)</p>'
    )
    pictures = "".join(_pictures(job, sweep.swept, max_image_width) for job in sweep.jobs)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
<script>{_ERROR_HOOK}</script>
</head>
<body>
<div id="js-errors" hidden></div>
<header><h1>{escape(title)}</h1><p class="meta">{meta}</p></header>
<section id="parallel"><h2>Parallel coordinates</h2>{_parallel(sweep)}</section>
<section id="metrics"><h2>Per-dataset metrics</h2>
<p class="meta">Final value and best over the run's validations; click a column to sort.</p>
<div class="scroll">{_metric_table(sweep)}</div></section>
<section id="curves"><h2>Learning curves</h2><div class="curves">{curve_html}</div></section>
<section id="pictures"><h2>Pictures</h2>
<p class="meta">Each job's <code>pictures/</code>: learning curves, validation crops per dataset (own head over the
ground truth), every head on one crop, bridge figures.</p>{pictures}</section>
<script>{_SCRIPT}</script>
</body>
</html>
"""
