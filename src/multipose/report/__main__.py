"""``python -m multipose.report <multirun dir> [--out FILE] [--check-browser]``."""

from __future__ import annotations

import argparse
import sys

from multipose.report import check_in_browser, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multipose.report",
        description="Write one self-contained HTML page about a Hydra multirun of multipose.train "
        "(parallel coordinates, per-dataset metrics, learning curves, pictures).",
    )
    parser.add_argument("sweep_dir", help="the multirun directory, logs/<task_name>/multiruns/<time>")
    parser.add_argument("--out", default=None, help="output file (default: <sweep_dir>/report.html)")
    parser.add_argument("--max-image-width", type=int, default=1400, help="downscale wider pictures (pixels)")
    parser.add_argument(
        "--check-browser",
        action="store_true",
        help="load the page in headless Chromium and check that its script ran without errors",
    )
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep_dir, args.out, args.max_image_width)
    except FileNotFoundError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.check_browser:
        result = check_in_browser(path)
        print(result.summary())
        if result.ran and not result.ok:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
