"""Inference throughput: multipose merged ViTPose++ vs Hugging Face transformers VitPose / VitPose+.

    python scripts/bench_infer.py                                   # CPU: batch 8, 256x192, size B
    python scripts/bench_infer.py --device cuda --batch 64 --dtype bf16 --sizes S B L H

For each size, in one process and on the same random input (random weights, ``torch.inference_mode``):

- ``multipose ViTPose++ merged``: a ViTPose++ model (PS-FFN, 6 experts, 6 classic heads) merged for task 0
  (``PoseModel.merge_experts``: experts folded into a dense fc2, COCO head only),
- ``transformers VitPose``: ``VitPoseForPoseEstimation`` with the classic decoder (dense FFN),
- ``transformers VitPose+``: the same with ``num_experts=6`` and ``part_features=C/4`` (``dataset_index`` 0),
- with ``--prompt-joints N`` (default 17; 0: off): the multipose model with N ExtPose-style pose-prompt tokens
  (docs/prompts.md) appended to its patch tokens, all valid (no attention mask), and with every other one masked
  (boolean SDPA key mask; the padding is trimmed to the longest prompt of the batch, here still N).

Timing: warm-up iterations, then ``--rounds`` rounds of ``--iters`` forward passes per model, the models
interleaved round by round in a rotating order (so a noisy shared machine affects all of them alike); the best round is reported
as images/s. The FLOPs of one forward are counted with ``torch.utils.flop_counter``; on CUDA the achieved
FLOP/s is also given as a fraction of the peak of a large plain matmul measured in the same process and dtype.
Transformers is needed (``pip install transformers``, the ``hf`` extra) unless ``--no-hf`` (multipose lines only).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from multipose.utils.bench import matmul_peak, sync

SIZES = {"S": "vit_small", "B": "vit_base", "L": "vit_large", "H": "vit_huge"}
DATASETS = {
    "coco": "coco",
    "aic": "aic",
    "mpii": "mpii",
    "ap10k": "ap10k",
    "apt36k": "ap10k",
    "wholebody": "coco_wholebody",
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def forward_flops(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(x)
    return int(counter.get_total_flops())


def build_multipose(size: str, img_size: tuple[int, int]) -> torch.nn.Module:
    from multipose.models.pose_model import build_pose_model

    model = build_pose_model(
        DATASETS, backbone=SIZES[size], head="classic", ffn="ps", img_size=img_size, drop_path_rate=0.0
    )
    return model.merge_experts("coco").eval()


def build_hf(size: str, img_size: tuple[int, int], num_experts: int) -> torch.nn.Module:
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    from multipose.models.registry import get_backbone_spec

    spec = get_backbone_spec(SIZES[size])
    bcfg = VitPoseBackboneConfig(
        image_size=list(img_size),
        patch_size=[16, 16],
        hidden_size=spec.embed_dim,
        num_hidden_layers=spec.depth,
        num_attention_heads=spec.num_heads,
        mlp_ratio=4,
        num_experts=num_experts,
        part_features=spec.part_features,
        layer_norm_eps=1e-6,
        out_indices=[spec.depth],
    )
    cfg = VitPoseConfig(backbone_config=bcfg, use_simple_decoder=False, num_labels=17)
    # the backbone (where the attention is) picks SDPA by default; printed with the results
    return VitPoseForPoseEstimation(cfg).eval()


def prompt_models(mp: torch.nn.Module, args: argparse.Namespace, x: torch.Tensor) -> dict[str, Callable]:
    """The merged model with ``--prompt-joints`` prompt tokens: all valid, and every other one masked."""
    n = int(args.prompt_joints)
    if n <= 0:
        return {}
    import copy

    from multipose.models.prompt_tokens import attach_prompt_encoder, prompt_model_config

    pm = copy.deepcopy(mp)
    attach_prompt_encoder(pm, prompt_model_config(["coco"]))
    pm.prompt.to(device=x.device, dtype=x.dtype)
    b, (h, w) = x.shape[0], x.shape[-2:]
    g = torch.Generator().manual_seed(0)
    full = {
        "prompt_keypoints": (torch.rand(b, n, 3, generator=g) * torch.tensor([w, h, 1.0])).to(x.device),
        "prompt_tags": torch.arange(n).remainder(len(pm.prompt.tags)).expand(b, -1).to(x.device),
        "prompt_skeletons": torch.zeros(b, n, dtype=torch.long, device=x.device),
        "prompt_valid": torch.ones(b, n, dtype=torch.bool, device=x.device),
    }
    half = dict(full, prompt_valid=(torch.arange(n, device=x.device) % 2 == 0).expand(b, -1).clone())
    half["prompt_valid"][0] = True  # one full prompt: the batch keeps all n tokens, half of them masked

    def run(prompt: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: pm.heads["coco"](
            pm.features(t, None, {k: v[: t.shape[0]] for k, v in prompt.items()})
        )

    return {f"+ {n} prompt tokens (no mask)": run(full), f"+ {n} prompt tokens (half masked)": run(half)}


def bench_size(size: str, args: argparse.Namespace, peak: float | None) -> None:
    device, dtype = args.device, DTYPES[args.dtype]
    img = tuple(args.img_size)
    x = torch.randn(args.batch, 3, *img, device=device, dtype=dtype)
    idx = torch.zeros(args.batch, dtype=torch.long, device=device)

    mp = build_multipose(size, img).to(device=device, dtype=dtype)
    models: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "multipose ViTPose++ merged": lambda t: mp.heads["coco"](mp.backbone(t)),
        **prompt_models(mp, args, x),
    }
    hf = None
    if args.hf:
        hf = build_hf(size, img, 1).to(device=device, dtype=dtype)
        hfp = build_hf(size, img, 6).to(device=device, dtype=dtype)
        models["transformers VitPose"] = lambda t: hf(pixel_values=t).heatmaps
        models["transformers VitPose+ (6 experts)"] = lambda t: (
            hfp(pixel_values=t, dataset_index=idx[: t.shape[0]]).heatmaps
        )
    flops = {name: forward_flops(fn, x[:1]) for name, fn in models.items()}
    with torch.inference_mode():
        ref = models["multipose ViTPose++ merged"](x)
        for name, fn in models.items():
            out = fn(x)
            assert out.shape == ref.shape, f"{name}: output {tuple(out.shape)} vs {tuple(ref.shape)}"
            for _ in range(args.warmup):
                fn(x)
        sync(device)
        best = {name: 0.0 for name in models}
        names = list(models)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
                fn = models[name]
                t = time.perf_counter()
                for _ in range(args.iters):
                    fn(x)
                sync(device)
                best[name] = max(best[name], args.batch * args.iters / (time.perf_counter() - t))
    attn = hf.backbone.config._attn_implementation if hf is not None else "not benchmarked"
    print(
        f"\nViTPose-{size} ({SIZES[size]}), batch {args.batch}, {img[0]}x{img[1]}, {args.dtype}, {device}, "
        f"transformers attention: {attn}"
    )
    ref_name = "transformers VitPose" if hf is not None else "multipose ViTPose++ merged"
    base = best[ref_name]
    for name, ips in best.items():
        gflop = flops[name] / 1e9
        line = f"  {name:<36} {ips:9.2f} img/s  {gflop:6.1f} GFLOP/img  x{ips / base:4.2f} vs {ref_name}"
        if peak:
            line += f"  {ips * flops[name] / peak:6.1%} of {args.dtype} matmul peak"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--img-size", type=int, nargs=2, default=[256, 192], metavar=("H", "W"))
    parser.add_argument("--sizes", nargs="+", default=["B"], choices=list(SIZES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--prompt-joints", type=int, default=17, help="prompt tokens per crop (0: no prompt lines)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--no-hf",
        dest="hf",
        action="store_false",
        help="only the multipose lines (no transformers comparison)",
    )
    args = parser.parse_args()
    if args.hf:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise SystemExit(
                "bench_infer.py compares against Hugging Face transformers, which is not installed: "
                'pip install -e ".[hf]" (or pip install "transformers>=4.48"), or run with --no-hf'
            ) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    peak = None
    if args.device.startswith("cuda"):
        peak = matmul_peak(args.device, DTYPES[args.dtype], n=8192)
        print(
            f"{args.dtype} matmul peak (8192^3): {peak / 1e12:.1f} TFLOP/s on {torch.cuda.get_device_name()}"
        )
    else:
        print(f"CPU, {torch.get_num_threads()} threads")
    for size in args.sizes:
        bench_size(size, args, peak)


if __name__ == "__main__":
    main()
