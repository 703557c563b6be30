"""Training throughput of the model on CPU (or GPU) and the fraction of the plain-matmul peak it reaches.

    python scripts/bench_train.py                         # the default CPU model (conf/train.yaml)
    python scripts/bench_train.py backbone=vit_base data.input_size=[256,192] data.heatmap_size=[64,48] \
        head=classic --batch 32 --device cuda --precision bf16
    python scripts/bench_train.py --head-bn compare      # model.head_bn own vs batch, side by side
    python scripts/bench_train.py --real                 # + the real default run's loop, loader included
    python scripts/bench_train.py --real --steps 60 trainer.precision=32    # any train.py override

Measures, on random inputs shaped like the configured data: the FLOPs of one training step (forward + backward,
counted by torch.utils.flop_counter), samples/s of full steps (forward, loss, backward, AdamW step), and the peak
of a plain square matmul in the same process and dtype; prints achieved FLOP/s as a fraction of that peak.
Model compute only: data loading is measured by scripts/bench_data.py.

``--real`` adds, next to that model-only figure, the real training loop of ``python -m multipose.train`` with
the same overrides (real data module and workers, augmentation, LightningModule, loss, optimiser, logger and
callbacks), run as a subprocess for ``--real-skip`` + ``--steps`` steps without validation; the first
``--real-skip`` steps (worker start-up, first-batch allocation) are not timed. The synthetic world is generated
first if it is missing (not timed). Overrides for both: ``paths.data_root=...``, ``trainer.precision=bf16-mixed``,
``data.num_workers=2``, ``backbone.stem=patch``; ``--precision`` sets the model-only side (default: the
config's ``trainer.precision``, which on CPU is bf16-mixed where bf16 is native).
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from multipose.utils.bench import matmul_peak, sync


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: data.batch_size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="model-only side (default: the config's trainer.precision, bf16 on CPUs with native bf16)",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="model-only side: torch.compile the backbone (inductor; needs a C++ compiler on CPU) and report the "
        "compile time",
    )
    parser.add_argument(
        "--head-bn",
        choices=["own", "batch", "compare"],
        default="own",
        help="model.head_bn: heads on their own samples or on the whole batch; compare = both, side by side",
    )
    parser.add_argument(
        "--real", action="store_true", help="also time the real training loop (loader included)"
    )
    parser.add_argument("--real-skip", type=int, default=20, help="untimed warm-up steps of the real loop")
    args = parser.parse_intermixed_args()

    from torch.utils.flop_counter import FlopCounterMode

    from multipose.losses import keypoint_mse
    from multipose.models.build import model_from_config
    from multipose.models.model_config import model_config_from_hydra
    from multipose.skeletons import get_skeleton
    from multipose.utils.compose import compose_config

    cfg = compose_config("train", args.overrides)
    if args.precision is None:
        args.precision = "bf16" if "bf16" in str(cfg.trainer.precision) else "fp32"
    names = list(cfg.data.datasets)
    skeletons = {n: get_skeleton(cfg.data.datasets[n].skeleton) for n in names}
    mix = SimpleNamespace(
        dataset_names=names,
        skeletons=skeletons,
        input_size=list(cfg.data.input_size),
        heatmap_size=list(cfg.data.heatmap_size),
    )
    model = model_from_config(model_config_from_hydra(cfg, mix)).to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if args.compile:
        model.backbone = torch.compile(model.backbone)
    batch = args.batch or int(cfg.data.batch_size)
    h, w = cfg.data.input_size
    hh, hw = cfg.data.heatmap_size
    images = torch.randn(batch, 3, h, w, device=args.device)
    didx = torch.arange(batch, device=args.device) % len(names)
    targets = {
        n: torch.rand(int((didx == i).sum()), s.num_keypoints, hh, hw, device=args.device)
        for i, (n, s) in enumerate(skeletons.items())
    }
    autocast = torch.autocast(
        args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.precision == "bf16"
    )

    def step(head_bn: str) -> None:
        with autocast:
            out = model.head_outputs(images, didx, "own", head_bn)
            loss = 0.0
            for n, pred in out.owned.items():
                loss = loss + keypoint_mse(pred, targets[n], torch.ones(pred.shape[:2], device=args.device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    compile_s = None
    if args.compile:  # compile outside the FLOP counter, timed
        t0 = time.perf_counter()
        step(args.head_bn if args.head_bn != "compare" else "own")
        compile_s = time.perf_counter() - t0

    def measure(head_bn: str) -> tuple[float, float]:
        """(seconds per step, FLOPs per step)"""
        with FlopCounterMode(display=False) as counter:
            step(head_bn)
        for _ in range(2):
            step(head_bn)
        sync(args.device)
        t = time.perf_counter()
        for _ in range(args.steps):
            step(head_bn)
        sync(args.device)
        return (time.perf_counter() - t) / args.steps, counter.get_total_flops()

    modes = ["own", "batch"] if args.head_bn == "compare" else [args.head_bn]
    timings: dict[str, tuple[float, float]] = {}
    for _ in range(3 if len(modes) > 1 else 1):  # alternate the modes; the fastest round is least disturbed
        for mode in modes:
            t_step, flops = measure(mode)
            timings[mode] = (min(t_step, timings.get(mode, (t_step,))[0]), flops)
    dt, flops_per_step = timings[modes[-1]]
    peak = matmul_peak(args.device, torch.bfloat16 if args.precision == "bf16" else torch.float32)
    achieved = flops_per_step / dt
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"model.head_bn={modes[-1]}; model: {cfg.backbone.name} ffn={cfg.backbone.ffn} head={cfg.head.type} params={params:.2f}M "
        f"input={h}x{w} heads={len(names)} batch={batch} device={args.device} precision={args.precision} "
        f"threads={torch.get_num_threads()}"
        + (f" torch.compile (first step {compile_s:.1f} s)" if args.compile else "")
    )
    print(
        f"train step: {dt * 1e3:.1f} ms, {batch / dt:.1f} samples/s, {flops_per_step / batch / 1e9:.3f} GFLOP/sample"
    )
    print(
        f"achieved {achieved / 1e9:.1f} GFLOP/s; plain {args.precision} matmul peak {peak / 1e9:.1f} GFLOP/s; "
        f"fraction of peak {achieved / peak:.2%}"
    )
    if len(timings) == 2:
        (t_own, f_own), (t_batch, f_batch) = timings["own"], timings["batch"]
        print(
            f"model.head_bn: own {t_own * 1e3:.1f} ms/step ({f_own / 1e9:.2f} GFLOP), batch {t_batch * 1e3:.1f} "
            f"ms/step ({f_batch / 1e9:.2f} GFLOP); batch/own time ratio {t_batch / t_own:.2f}"
        )

    if args.real:
        real = real_loop(args.overrides, args.steps, args.real_skip)
        print(
            f"real loop (python -m multipose.train, loader + logging + callbacks): {real['s_per_step'] * 1e3:.1f} "
            f"ms/step, {real['samples_per_s']:.1f} samples/s over {real['steps']} steps; model-only / real time "
            f"ratio {real['s_per_step'] / dt:.2f}"
        )


def real_loop(overrides: list[str], steps: int, skip: int) -> dict:
    """Run ``python -m multipose.train`` with ``overrides`` for ``skip + steps`` steps (no validation, run dir in
    a temporary folder) and return what :class:`multipose.utils.bench.StepTimer` measured."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "multipose.train",
            *overrides,
            f"++trainer.max_steps={skip + steps + 1}",
            "trainer.check_val_every_n_epoch=100000",
            "validate=false",
            "print_config=false",
            "+callbacks.step_timer._target_=multipose.utils.bench.StepTimer",
            f"+callbacks.step_timer.skip={skip}",
            f"hydra.run.dir={tmp}/run",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        result = Path(tmp, "run", "step_timer.json")
        if done.returncode or not result.is_file():
            raise SystemExit(
                f"bench_train --real: the training run failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
        return json.loads(result.read_text())


if __name__ == "__main__":
    main()
