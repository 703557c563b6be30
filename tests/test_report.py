"""The offline sweep report (python -m multipose.report): parallel coordinates, metric table, learning curves,
pictures, one self-contained page written atomically, and a real-browser check where Chromium is installed."""

from __future__ import annotations

import re

import pytest

from multipose.report import check_in_browser, find_browser, write_report
from multipose.report.__main__ import main as report_main
from multipose.report.parallel import Axis, build_axes, colour_ramp, parallel_coordinates_svg
from test_sweep import make_sweep_dir


def test_axes_are_log_for_weights_spanning_decades_linear_otherwise_and_categorical_for_text():
    rows = [
        {"alpha": 3.33e-6, "lr": 1e-3, "exp": "a", "score": 0.2},
        {"alpha": 3.33e-4, "lr": 2e-3, "exp": "b", "score": 0.4},
        {"alpha": 3.33e-5, "lr": 2e-3, "exp": "a", "score": float("nan")},
    ]
    alpha, lr, exp, score = build_axes(["alpha", "lr", "exp", "score"], rows)
    assert (alpha.kind, lr.kind, exp.kind, score.kind) == ("log", "linear", "category", "linear")
    assert alpha.position(3.33e-5) == pytest.approx(0.5)  # the middle decade sits in the middle
    assert lr.position(1.5e-3) == pytest.approx(0.5)
    assert exp.position("b") == 1.0 and exp.position("zzz") is None
    assert score.position(float("nan")) is None and score.position(0.4) == 1.0
    assert Axis("x", "log", 1e-3, 1e-1).ticks()[0][1] == "0.001"


def test_svg_draws_one_line_per_job_ends_missing_values_and_dashes_failed_jobs():
    rows = [
        {"job": 0, "status": "ok", "a": 1.0, "score": 0.1},
        {"job": 1, "status": "ok", "a": 2.0, "score": 0.9},
        {"job": 2, "status": "failed", "a": 3.0, "score": float("nan")},
    ]
    svg = parallel_coordinates_svg(build_axes(["a", "score"], rows), rows, colour_by="score")
    lines = re.findall(r'<polyline class="pc-line" data-job="(\d)"[^>]*>', svg)
    assert lines == ["0", "1"]  # job 2 has no score: a single point (circle), not a line
    assert re.search(r'<circle class="pc-line" data-job="2"[^>]*fill="#9a9a9a"', svg)
    colours = re.findall(r'data-job="[01]"[^>]*stroke="(#[0-9a-f]{6})"', svg)
    assert colours == [colour_ramp(0.0), colour_ramp(1.0)]  # low score blue, high score yellow
    assert colour_ramp(float("nan")) == "#9a9a9a"
    failed = [{"job": 3, "status": "failed", "a": 1.0, "score": 0.5}, *rows[:2]]
    svg = parallel_coordinates_svg(build_axes(["a", "score"], failed), failed, colour_by="score")
    assert re.search(r'data-job="3"[^>]*stroke-dasharray', svg)


def test_report_page_is_self_contained_and_holds_every_section(tmp_path):
    sweep_dir = make_sweep_dir(tmp_path / "sweep", with_pictures=True)
    path = write_report(sweep_dir)
    assert path == sweep_dir / "report.html"
    assert not [p for p in sweep_dir.iterdir() if p.name.startswith(".")]  # atomic: no temporary file left
    html = path.read_text()
    for element in ('id="parcoords"', 'id="metrics-table"', 'id="curves"', 'id="pictures"', 'id="js-errors"'):
        assert element in html
    # nothing is fetched from elsewhere: every src/href is inline data
    assert not re.findall(r'(?:src|href)="(?!data:)', html)
    assert "<script src" not in html and "<link" not in html
    # one table row and one parallel-coordinates element per job; axes for the swept keys and metrics
    assert len(re.findall(r'<tr data-job="\d"', html)) == 4
    assert len(re.findall(r'class="pc-line" data-job=', html)) == 4
    assert "loss.posebh.alpha (log)" in html and "optim.lr" in html and "syn_mpii PCKh@0.5" in html
    assert re.search(r'<tr data-job="2" class="failed">', html) and re.search(
        r'<tr data-job="1" class="best">', html
    )
    # learning curves from the CSV logs (objective, loss, each dataset) and job 0's picture
    assert len(re.findall(r'<img class="curve"', html)) == 4
    assert len(re.findall(r'<img class="picture"', html)) == 1
    # the best value of job 0 over its validations (0.30) is in the table next to its final value (0.25)
    assert 'data-value="0.3"' in html and 'data-value="0.25"' in html


def test_report_cli_writes_elsewhere_and_names_a_wrong_folder(tmp_path, capsys):
    sweep_dir = make_sweep_dir(tmp_path / "sweep")
    out = tmp_path / "out" / "page.html"
    assert report_main([str(sweep_dir), "--out", str(out)]) == 0
    assert out.is_file() and "report:" in capsys.readouterr().out
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "no such multirun directory" in capsys.readouterr().err


@pytest.mark.skipif(
    find_browser() is None, reason="no headless Chromium here (apt-get install chromium-headless-shell)"
)
def test_report_renders_in_a_real_browser_without_script_errors(tmp_path):
    page = write_report(make_sweep_dir(tmp_path / "sweep", with_pictures=True))
    result = check_in_browser(page, screenshot=tmp_path / "page.png")
    assert result.ran and result.ok, result.summary()
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000
    # the check can fail: a page whose script throws is caught, and one without the key elements too
    broken = tmp_path / "broken.html"
    html = page.read_text().replace("document.body.setAttribute('data-ready', '1');", "undefinedFunction();")
    broken.write_text(html)
    bad = check_in_browser(broken)
    assert bad.ran and not bad.ok and any("undefinedFunction" in e for e in bad.errors), bad.summary()
    empty = tmp_path / "empty.html"
    empty.write_text("<!doctype html><html><body data-ready='1'></body></html>")
    assert set(check_in_browser(empty).missing) >= {"parcoords", "metrics-table"}


def test_no_browser_is_reported_as_skipped_not_passed(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIPOSE_BROWSER", str(tmp_path / "no-such-browser"))
    result = check_in_browser(tmp_path / "x.html")
    assert not result.ran and not result.ok and "no Chromium" in result.reason
