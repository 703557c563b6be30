"""Load a report page in a real browser (headless Chromium) and check it: the page's script ran to its end
(``<body data-ready="1">``), no script error was caught (``#js-errors`` stays empty; the page installs its error
hook before its own script), and the key elements exist. Chromium's ``--dump-dom`` prints the DOM after the
scripts ran, so no driver (Playwright, Selenium) is needed; ``--screenshot`` writes a PNG of the page.

The browser is the first of ``$MULTIPOSE_BROWSER`` and the usual Chromium / Chrome executables on ``PATH``
(Debian: ``apt-get install chromium-headless-shell`` or ``chromium``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["KEY_ELEMENTS", "BrowserCheck", "check_in_browser", "find_browser"]

BROWSERS = (
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "headless_shell",
)
#: element ids every report page must have once rendered
KEY_ELEMENTS = ("parcoords", "metrics-table", "curves", "pictures", "js-errors")


@dataclass
class BrowserCheck:
    ran: bool  # False: no browser (see reason)
    ok: bool = False
    browser: str = ""
    reason: str = ""
    errors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def summary(self) -> str:
        if not self.ran:
            return f"browser check skipped: {self.reason}"
        if self.ok:
            return f"browser check passed ({self.browser}): script ran, no errors, key elements present"
        return (
            f"browser check FAILED ({self.browser}): {self.reason}; script errors: {self.errors or 'none'}; "
            f"missing elements: {self.missing or 'none'}"
        )


def find_browser() -> str | None:
    """Path of a headless-capable Chromium, or ``None``."""
    env = os.environ.get("MULTIPOSE_BROWSER")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="multipose-browser-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",  # root in containers
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_in_browser(
    page: str | Path,
    screenshot: str | Path | None = None,
    timeout: float = 120.0,
    size: tuple[int, int] = (1400, 2400),
) -> BrowserCheck:
    """Render ``page`` in headless Chromium and check it (see the module doc). ``screenshot`` writes a PNG of
    the top ``size`` (width, height) of the page."""
    browser = find_browser()
    if browser is None:
        return BrowserCheck(
            ran=False,
            reason="no Chromium found (set MULTIPOSE_BROWSER or install chromium / chromium-headless-shell)",
        )
    url = Path(page).resolve().as_uri()
    try:
        proc = _run(browser, ["--dump-dom", url], timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        return BrowserCheck(ran=True, browser=browser, reason=f"the browser did not run: {err}")
    dom = proc.stdout
    if proc.returncode != 0 or "<body" not in dom:
        return BrowserCheck(
            ran=True, browser=browser, reason=f"exit {proc.returncode}, no DOM: {proc.stderr.strip()[-500:]}"
        )
    errors = [re.sub(r"<[^>]+>", "", m) for m in re.findall(r'class="js-error"[^>]*>(.*?)</div>', dom, re.S)]
    missing = [k for k in KEY_ELEMENTS if not re.search(rf'\sid="{re.escape(k)}"', dom)]
    ready = re.search(r'<body[^>]*\bdata-ready="1"', dom) is not None
    shot = None
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        try:
            _run(browser, [f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", url], timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shot = shot if shot.is_file() else None
    ok = ready and not errors and not missing
    reason = (
        "" if ok else ("the page's script did not run to its end" if not ready else "see errors / missing")
    )
    return BrowserCheck(
        ran=True, ok=ok, browser=browser, reason=reason, errors=errors, missing=missing, screenshot=shot
    )
