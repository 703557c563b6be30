"""Build (and save) the W&B workspace of a sweep: α/β/γ (any swept keys) vs val/score and per-dataset AP
(parallel coordinates, scatter plots), validation curves per dataset, the loss terms, and the pictures.

    python scripts/wandb_workspace.py logs/posebh_demo/multiruns/<time> --entity ME --project multipose
    python scripts/wandb_workspace.py logs/posebh_demo/multiruns/<time> --dry-run      # print the spec, no network

The runs must have been logged with `logger=wandb` (or `logger=many`): they are grouped under
`<task_name>_<multirun dir name>`, which the workspace filters on. Needs `pip install -e ".[sweeps]"`
(wandb-workspaces) and a W&B login for saving.
"""

from __future__ import annotations

import argparse
import json
import sys

from multipose.report.wandb_workspace import build_workspace, spec_from_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the multirun directory, logs/<task_name>/multiruns/<time>")
    parser.add_argument("--entity", help="W&B entity (user or team)")
    parser.add_argument("--project", default="multipose", help="W&B project the runs were logged to")
    parser.add_argument("--name", default=None, help="workspace name (default: 'sweep <group>')")
    parser.add_argument("--dry-run", action="store_true", help="print the workspace spec as JSON and stop")
    args = parser.parse_args(argv)
    try:
        spec = spec_from_sweep(args.sweep_dir, args.name)
    except FileNotFoundError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(spec, indent=2))
        return 0
    if not args.entity:
        print("Error: --entity is needed to save the workspace (or use --dry-run)", file=sys.stderr)
        return 2
    workspace = build_workspace(spec, args.entity, args.project)
    saved = workspace.save()
    print(f"workspace saved: {saved.url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
