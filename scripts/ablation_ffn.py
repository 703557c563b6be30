"""FFN ablation on the synthetic world (ViTPose++ Table 11 analogue), with real training runs.

    python scripts/ablation_ffn.py [--steps 600] [--out docs/ablation.md] [extra Hydra overrides...]

Trains, on the human + quadruped mix `data=synthetic_ablation` (COCO-like, MPII-like, AP-10K-like sets):
  * single-task ViTPose: one model per dataset, trained on that dataset alone;
  * multi-task baseline: shared FFN, one head per dataset;
  * ViTPose++ PS-FFN (partially shared, alpha = 0.25);
  * I-FFN (independent FFN per task) and IS-FFN (shared + independent, summed).
Every model gets the same budget: the same number of optimiser steps at the same batch size (24) and the same
schedule; single-task models see only their own dataset. Each run is a normal `python -m multipose.train`
run (its run directory holds metrics.json and the config); the table is written as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATASETS = ["syn_coco", "syn_mpii", "syn_ap10k"]
METRIC = {"syn_coco": "AP", "syn_mpii": "PCKh@0.5", "syn_ap10k": "AP"}


def run(name: str, overrides: list[str], args, log_root: Path) -> dict:
    out_dir = log_root / name
    cmd = [
        sys.executable,
        "-m",
        "multipose.train",
        "data=synthetic_ablation",
        f"task_name=ablation_{name}",
        f"hydra.run.dir={out_dir}",
        "callbacks=none",
        "print_config=false",
        f"data.steps_per_epoch={args.steps_per_epoch}",
        f"trainer.max_epochs={args.steps // args.steps_per_epoch}",
        f"trainer.check_val_every_n_epoch={args.steps // args.steps_per_epoch}",
        "evaluation.cross_skeleton=false",
        *overrides,
        *args.overrides,
    ]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    if proc.returncode != 0:
        raise RuntimeError(f"run {name} failed:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    print(
        f"{name}: {time.time() - t:.0f}s",
        {
            k: round(v, 3)
            for k, v in metrics.items()
            if k.count("/") == 2 and k.split("/")[-1] in METRIC.values()
        },
        flush=True,
    )
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--out", default="docs/ablation.md")
    parser.add_argument("--logs", default="logs/ablation")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    log_root = Path(args.logs).resolve()

    rows: dict[str, dict[str, float]] = {}
    single: dict[str, float] = {}
    for d in DATASETS:
        drop = [f"~data.datasets.{o}" for o in DATASETS if o != d]
        m = run(
            f"single_{d}", [*drop, "data.batch_size=24", f"data.datasets.{d}.batch_count=24"], args, log_root
        )
        single[d] = m[f"val/{d}/{METRIC[d]}"]
    rows["single-task ViTPose (one model per dataset)"] = single
    for label, ffn in [
        ("multi-task, shared FFN + per-dataset heads", "shared"),
        ("ViTPose++ PS-FFN (alpha 0.25)", "ps"),
        ("I-FFN (independent FFN per task)", "independent"),
        ("IS-FFN (shared + independent FFN)", "shared_independent"),
    ]:
        m = run(f"multi_{ffn}", [f"backbone.ffn={ffn}"], args, log_root)
        rows[label] = {d: m[f"val/{d}/{METRIC[d]}"] for d in DATASETS}

    header = "| model | " + " | ".join(f"{d} {METRIC[d]}" for d in DATASETS) + " | mean |"
    lines = [header, "|" + " --- |" * (len(DATASETS) + 2)]
    for label, vals in rows.items():
        mean = sum(vals.values()) / len(vals)
        lines.append(f"| {label} | " + " | ".join(f"{vals[d]:.3f}" for d in DATASETS) + f" | {mean:.3f} |")
    table = "\n".join(lines)
    print(table)
    cmd = "python scripts/ablation_ffn.py " + " ".join(
        [f"--steps {args.steps}", f"--steps-per-epoch {args.steps_per_epoch}", *args.overrides]
    )
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    marker_start, marker_end = "<!-- ablation:start -->", "<!-- ablation:end -->"
    block = f"{marker_start}\nCommand: `{cmd}`\n\n{table}\n{marker_end}"
    if marker_start in text:
        text = text.split(marker_start)[0] + block + text.split(marker_end)[1]
    else:
        text = text + "\n" + block + "\n"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
