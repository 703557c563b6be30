"""Convert pose checkpoints to the multipose format.

    python -m multipose.convert SRC DST [--format auto|vitpose|vitpose++|hf|mae|multipose|lightning]
                                        [--size vit_base] [--num-heads N] [--img-size H W]
                                        [--head-names coco,aic,...] [--skeletons coco,aic,...]
                                        [--ffn shared|ps] [--num-experts 6] [--part-features P]
                                        [--hf-dataset-index T|all] [--merge HEAD]

SRC is an official ViTPose / ViTPose++ ``.pth``, a Hugging Face VitPose state dict (``.safetensors``,
``.bin`` or a model directory; its ``config.json`` is read when present), MAE pretraining weights, a Lightning
``.ckpt`` of a multipose run or a multipose file. DST ending in ``.safetensors`` is written as safetensors with
the model config as JSON metadata; any other name is a ``torch.save`` dict (format: :mod:`multipose.models.checkpoints.native`).
The converted weights are loaded into a freshly built model (strict) before anything is written, and a summary
(format, sizes, heads, dropped keys) is printed. ``--merge HEAD`` writes the dense single-task model of that
head instead (ViTPose++ experts folded into ``fc2``, only that head kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multipose.models.checkpoints import (
    FORMATS,
    CheckpointError,
    ConversionResult,
    convert_checkpoint,
    save_multipose,
)
from multipose.models.model_config import ModelConfig


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. coco,aic,mpii")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multipose.convert",
        description="Convert ViTPose / ViTPose++ / Hugging Face / MAE / Lightning checkpoints to multipose.",
    )
    p.add_argument("src", type=Path, help="checkpoint to convert")
    p.add_argument("dst", type=Path, help="output file (.safetensors or .pt/.pth)")
    p.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="source layout (default: detect)"
    )
    p.add_argument(
        "--size",
        default=None,
        help="named backbone size (vit_small, vit_base, ...): checks the dims "
        "and gives the number of attention heads",
    )
    p.add_argument("--num-heads", type=int, default=None, help="attention heads (not stored in the weights)")
    p.add_argument(
        "--img-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="input size the weights were trained at (default: a 4:3 grid from pos_embed); "
        "for MAE the target size (default 256 192)",
    )
    p.add_argument(
        "--head-names",
        type=_csv,
        default=None,
        help="head (dataset) names in checkpoint order: keypoint_head, associate_keypoint_heads.0, ...",
    )
    p.add_argument(
        "--skeletons", type=_csv, default=None, help="skeleton names, one per head (default: from names)"
    )
    p.add_argument("--ffn", default="shared", choices=["shared", "ps"], help="MAE only: target FFN")
    p.add_argument("--num-experts", type=int, default=6, help="MAE only: experts of the ps-FFN target")
    p.add_argument("--part-features", type=int, default=None, help="MAE only: expert width p (default C/4)")
    p.add_argument(
        "--hf-dataset-index",
        default="0",
        help="HF VitPose+ only: expert merged with the single HF head (default 0 = COCO), or 'all' to "
        "keep every expert",
    )
    p.add_argument(
        "--merge",
        default=None,
        metavar="HEAD",
        help="write the dense single-task model of this head (dataset name)",
    )
    return p


def _merge(result: ConversionResult, head: str) -> ConversionResult:
    """Dense single-task model of ``head`` (experts folded into fc2, that head only)."""
    from multipose.models.loading import build_from_result

    model = build_from_result(result)
    if head not in model.heads:
        raise CheckpointError(
            f"{result.source}: --merge {head}: no such head; heads: {', '.join(model.heads)}"
        )
    merged = model.merge_experts(head)
    mlp_ratio = merged.backbone.config["mlp_ratio"]
    cfg = ModelConfig.from_dict(result.model_config).merged(head, mlp_ratio=mlp_ratio).to_dict()
    notes = [*result.notes, f"merged for head {head!r} (expert {model.head_index(head)})"]
    return ConversionResult(result.format, cfg, merged.state_dict(), result.source, result.dropped, notes)


def _verify(result: ConversionResult) -> None:
    """Build the model and load the converted weights strictly (backbone only for backbone-only files)."""
    from multipose.models.loading import build_from_result
    from multipose.models.registry import build_backbone

    cfg = ModelConfig.from_dict(result.model_config)
    bb = cfg.backbone
    if cfg.heads and (bb.ffn == "shared" or bb.num_experts == len(cfg.heads)):
        build_from_result(result)
        return
    if cfg.heads:
        result.notes.append(
            f"{bb.num_experts} experts but {len(cfg.heads)} head(s): usable as backbone.init (load_backbone_init), "
            f"not by load_pose_model"
        )
    backbone = build_backbone(bb.name, **bb.kwargs())
    sd = {k[len("backbone.") :]: v for k, v in result.state_dict.items() if k.startswith("backbone.")}
    missing, unexpected = backbone.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("last_norm.")]  # MAE has no last_norm (official)
    if missing or unexpected:
        raise CheckpointError(
            f"{result.source}: backbone weights do not fit: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        hf_expert = None if args.hf_dataset_index == "all" else int(args.hf_dataset_index)
    except ValueError:
        print(
            f"error: --hf-dataset-index must be an integer or 'all', got {args.hf_dataset_index!r}",
            file=sys.stderr,
        )
        return 2
    try:
        result = convert_checkpoint(
            args.src,
            args.format,
            head_names=args.head_names,
            skeletons=args.skeletons,
            num_heads=args.num_heads,
            img_size=tuple(args.img_size) if args.img_size else None,
            size_name=args.size,
            ffn=args.ffn,
            num_experts=args.num_experts,
            part_features=args.part_features,
            hf_expert=hf_expert,
        )
        if args.merge:
            result = _merge(result, args.merge)
        _verify(result)
        save_multipose(
            args.dst,
            result.model_config,
            result.state_dict,
            source={"format": result.format, "file": args.src.name},
        )
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    print(f"wrote      : {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
