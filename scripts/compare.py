"""Honest comparison of a training method against the baseline: paired continuations of one stage-0 checkpoint.

    python scripts/compare.py --stage0 STAGE0.ckpt --method "+bridge=acae" --seeds 0 1 --steps 300 --out DIR
    python scripts/compare.py --method "loss.heatmap=2.0" --method-name hm2 --steps 300 --out DIR \
        --base "optim.lr=5e-4" --shared "paths.data_root=/data"     # stage 0 trained (or reused) first

For every seed, the baseline arm (``--base`` overrides) and the method arm (``--base`` + ``--method``) continue
the same stage-0 weights (``init_from``) for ``--steps`` optimiser steps on the same batches (the mixed-batch
stream is a function of the seed and the batch index only; every run writes a digest of its batches, and the
table says whether the arms matched). Each run is ``python -m multipose.train`` in its own directory under
``DIR/runs``; a run whose ``metrics.json`` exists under the same composed config is reused, an interrupted one
(Ctrl-C) resumes from its ``last.ckpt``, a failed one is listed in the table. Writes ``DIR/comparison.md`` and
``DIR/comparison.csv`` (atomically) and prints the Markdown.

Without ``--stage0`` the stage-0 model is trained with ``+experiment=cpu_study`` (``--stage0-preset default``:
the default run) and cached in ``--cache`` under the hash of its composed config. See docs/compare.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from multipose.compare import (
    STAGE0_PRESETS,
    ProtocolError,
    csv_report,
    execute,
    header_lines,
    markdown_report,
    method_name_from,
    plan_continuation,
    plan_stage0,
    run_state,
    stage0_checkpoint,
    summarize,
)
from multipose.utils.run import write_text_atomic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--method", required=True, help='Hydra overrides that turn the method on, e.g. "+bridge=acae"'
    )
    p.add_argument("--method-name", default=None, help="name of the method arm (default: from the overrides)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of both arms (default: 0 1)")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps of every continuation")
    p.add_argument("--epochs", type=int, default=5, help="epochs the steps are split into (default 5)")
    p.add_argument("--base", default="", help="overrides of both arms (e.g. a fine-tune learning rate)")
    p.add_argument("--shared", default="", help="overrides of every run, stage 0 included (paths, trainer)")
    p.add_argument("--out", required=True, type=Path, help="folder of the runs and the tables")
    p.add_argument("--stage0", type=Path, default=None, help="stage-0 checkpoint (default: train/reuse one)")
    p.add_argument("--stage0-preset", choices=sorted(STAGE0_PRESETS), default="cpu_study")
    p.add_argument("--stage0-seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=Path("logs/compare_cache"), help="stage-0 cache folder")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their commands, train nothing")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the table of the runs finished so far (the others listed as missing)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    method, base, shared = (shlex.split(s) for s in (args.method, args.base, args.shared))
    if not method:
        raise ProtocolError("--method is empty; give the overrides that turn the method on")
    name = args.method_name or method_name_from(method)
    if name == "baseline":
        raise ProtocolError("--method-name baseline is the name of the other arm; choose another name")

    stage0 = args.stage0
    if stage0 is None:
        plan0 = plan_stage0(args.stage0_preset, args.cache, args.stage0_seed, shared)
        if run_state(plan0) == "done":
            stage0 = stage0_checkpoint(plan0.run_dir)
        elif args.report_only:
            raise ProtocolError(f"stage 0 ({plan0.run_dir}) is not trained yet: nothing to report")
        elif args.dry_run:
            print(f"stage 0 ({args.stage0_preset}): {shlex.join(plan0.command())}")
            print("(the continuations' run directories depend on the stage-0 checkpoint, not trained yet)")
            stage0 = Path(__file__)  # stands in for the checkpoint in the printed plan
        else:
            (result,) = execute([plan0])
            if not result.ok:
                print(f"stage 0 failed: {result.note}", file=sys.stderr)
                return 1
            stage0 = stage0_checkpoint(plan0.run_dir)

    plans = []
    for seed in args.seeds:
        for arm, extra in (("baseline", []), (name, method)):
            plans.append(
                plan_continuation(arm, seed, stage0, args.steps, args.epochs, args.out, shared, base, extra)
            )
    if args.dry_run:
        for plan in plans:
            print(f"{plan.label}: {shlex.join(plan.command())}")
        return 0

    results = execute(plans, train=not args.report_only)
    rows = summarize(
        [r.metrics for r in results if r.ok and r.plan.arm == "baseline"],
        [r.metrics for r in results if r.ok and r.plan.arm == name],
    )
    command = shlex.join(["python", "scripts/compare.py", *(sys.argv[1:] if argv is None else argv)])
    header = header_lines(command, Path(stage0), args.steps, args.epochs, results)
    text = markdown_report(rows, header, name)
    write_text_atomic(args.out / "comparison.md", text)
    write_text_atomic(args.out / "comparison.csv", csv_report(rows))
    print(text)
    print(f"[compare] wrote {args.out / 'comparison.md'} and {args.out / 'comparison.csv'}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProtocolError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("[compare] interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
