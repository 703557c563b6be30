"""Export one head of a checkpoint to ONNX and check it against PyTorch with onnxruntime.

    python -m multipose.export CKPT --head NAME --out FILE.onnx [--opset 17] [--tolerance 1e-4] [--no-verify]

CKPT is anything :func:`multipose.models.loading.load_pose_model` reads (a training ``.ckpt``, a converted
multipose file, an official ViTPose / ViTPose++ ``.pth``). ``--head`` names a head by its dataset name (or by its
skeleton when exactly one head predicts it). The exported graph is that head through its merged expert: a
ViTPose++ backbone's experts are folded into a dense FFN (:meth:`PoseModel.merge_experts`), so the ONNX model is
a plain ViTPose with one head.

Graph: input ``images`` ``[N, 3, H, W]`` float32, ImageNet-normalised RGB crops (``N`` is dynamic); output
``heatmaps`` ``[N, K, H/4, W/4]``. Decoding (flip test, argmax + refinement, mapping back to the image) stays
outside the graph, as in mmpose's deploy path. The model's head, skeleton, keypoint names, flip indices, input
size and normalisation are stored as ONNX metadata (``multipose.*`` keys).

Unless ``--no-verify``, onnxruntime runs the exported file on random inputs and on image-like inputs (smooth
pixel fields with edges, normalised like real crops) at batch sizes other than the export batch, and the
maximum absolute heatmap difference to PyTorch must be at most ``--tolerance``; the file is written only when it
is. Needs the optional extra: ``pip install 'multipose[onnx]'``.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from multipose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from multipose.models.checkpoints import CheckpointError
from multipose.models.pose_model import PoseModel


class ExportError(RuntimeError):
    """An export that cannot be done or did not verify; the message says why and what to do."""


class SingleHead(nn.Module):
    """``images -> heatmaps`` of one head of a dense (merged) :class:`PoseModel`."""

    def __init__(self, model: PoseModel, head: str) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.heads[head]

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))


def pick_head(model: PoseModel, name: str, source: str) -> str:
    """The head called ``name`` (dataset name, or a skeleton predicted by exactly one head); else an error
    listing the heads the checkpoint has."""
    if name in model.heads:
        return name
    by_skeleton = [n for n in model.dataset_names if model.head_skeletons.get(n) == name]
    if len(by_skeleton) == 1:
        return by_skeleton[0]
    have = ", ".join(f"{n} (skeleton {model.head_skeletons.get(n, '?')})" for n in model.dataset_names)
    if by_skeleton:
        raise ExportError(
            f"{source}: skeleton {name!r} is predicted by several heads; pass --head one of: {have}"
        )
    raise ExportError(f"{source}: the checkpoint has no head {name!r}; its heads are: {have}")


def single_head_module(model: PoseModel, head: str) -> SingleHead:
    """``head`` through its merged expert (dense FFN; a shared-FFN backbone is used as is), in eval mode."""
    dense = (
        model.merge_experts(head).eval() if getattr(model.backbone, "routed", False) else copy.deepcopy(model)
    )
    for blk in dense.backbone.blocks:  # SDPA and the explicit softmax agree; keep the exporter on plain ops
        blk.attn.fused_attn = False
    return SingleHead(dense, head).eval()


def image_like_batch(n: int, size: tuple[int, int], seed: int = 0) -> Tensor:
    """``n`` crops that look like real inputs to the network: smooth colour fields with a few sharp-edged
    shapes, in [0, 1] pixel range, then ImageNet-normalised (value range and statistics of real crops)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = torch.rand(n, 3, max(h // 32, 2), max(w // 32, 2), generator=g)
    img = nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(n):
        for _ in range(4):
            cy, cx = (torch.rand(2, generator=g) * torch.tensor([h, w])).tolist()
            r = float(torch.rand((), generator=g)) * min(h, w) / 4 + 2
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[i, :, mask] = torch.rand(3, 1, generator=g)
    img = img.clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (img - mean) / std


@dataclass
class ParityCheck:
    name: str
    batch: int
    max_abs_diff: float
    max_abs_value: float


def export_onnx(module: SingleHead, path: Path, input_size: tuple[int, int], opset: int = 17) -> None:
    """Export with a dynamic batch axis (TorchScript-based exporter; batch 2 as the example)."""
    example = image_like_batch(2, input_size, seed=1)
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter's deprecation notice, and trace warnings about the (fixed) input size
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["heatmaps"],
            dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def add_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store ``meta`` as ONNX ``metadata_props`` (needs the ``onnx`` package; skipped without it)."""
    try:
        import onnx
    except ImportError:
        return
    model = onnx.load(str(path))
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))


def verify_onnx(module: SingleHead, path: Path, input_size: tuple[int, int]) -> list[ParityCheck]:
    """Run the ONNX file with onnxruntime (CPU) and PyTorch on the same inputs; max |delta| per input set."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError(
            "onnxruntime is not installed, so the export cannot be verified: pip install 'multipose[onnx]' "
            "(or pass --no-verify)"
        ) from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    cases = [
        ("random N(0,1)", torch.randn(3, 3, *input_size, generator=g)),
        ("image-like", image_like_batch(1, input_size, seed=2)),
        ("image-like", image_like_batch(5, input_size, seed=3)),
    ]
    checks = []
    for name, x in cases:
        with torch.no_grad():
            ref = module(x)
        (out,) = session.run(["heatmaps"], {"images": x.numpy()})
        got = torch.from_numpy(out)
        if got.shape != ref.shape:
            raise ExportError(
                f"{path}: onnxruntime gave heatmaps {tuple(got.shape)}, PyTorch {tuple(ref.shape)}"
            )
        checks.append(ParityCheck(name, x.shape[0], float((got - ref).abs().max()), float(ref.abs().max())))
    return checks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m multipose.export", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "ckpt", type=Path, help="checkpoint (.ckpt of a run, converted multipose file, ViTPose .pth)"
    )
    p.add_argument("--head", required=True, help="head to export: dataset name (or skeleton name)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="max |ONNX - PyTorch| allowed (default 1e-4)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime parity check")
    return p


def run_export(
    ckpt: Path, head: str, out: Path, *, opset: int = 17, tolerance: float = 1e-4, verify: bool = True
) -> list[ParityCheck]:
    """Export ``head`` of ``ckpt`` to ``out`` (written only after the parity check passes); returns the checks."""
    from multipose.models.loading import load_pose_model

    model = load_pose_model(ckpt)
    name = pick_head(model, head, str(ckpt))
    module = single_head_module(model, name)
    input_size = tuple(int(v) for v in model.backbone.img_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export_onnx(module, tmp, input_size, opset)
        skeleton = model.head_skeletons.get(name, name)
        meta = {
            "multipose.head": name,
            "multipose.skeleton": skeleton,
            "multipose.num_keypoints": str(int(module.head.num_keypoints)),
            "multipose.input_size_hw": f"{input_size[0]},{input_size[1]}",
            "multipose.normalize_mean_rgb": ",".join(map(str, IMAGENET_MEAN)),
            "multipose.normalize_std_rgb": ",".join(map(str, IMAGENET_STD)),
            "multipose.source": Path(ckpt).name,
        }
        try:
            from multipose.skeletons import get_skeleton

            sk = get_skeleton(skeleton)
            meta["multipose.keypoint_names"] = ",".join(sk.keypoints)
            meta["multipose.flip_indices"] = ",".join(map(str, sk.flip_indices))
        except Exception:  # noqa: BLE001 - a skeleton unknown to this install: names are optional metadata
            pass
        add_metadata(tmp, meta)
        checks: list[ParityCheck] = []
        if verify:
            checks = verify_onnx(module, tmp, input_size)
            worst = max(c.max_abs_diff for c in checks)
            if not math.isfinite(worst) or worst > tolerance:
                raise ExportError(
                    f"{out}: ONNX output differs from PyTorch by {worst:.3g} > --tolerance {tolerance:g}; nothing "
                    f"was written. Try another --opset."
                )
        os.replace(tmp, out)
        return checks
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        checks = run_export(
            args.ckpt,
            args.head,
            args.out,
            opset=args.opset,
            tolerance=args.tolerance,
            verify=not args.no_verify,
        )
    except (CheckpointError, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for c in checks:
        print(
            f"onnxruntime vs PyTorch  {c.name:<14} batch {c.batch}: max |delta| {c.max_abs_diff:.2e} "
            f"(heatmap max {c.max_abs_value:.3g})"
        )
    if checks:
        print(
            f"parity     : OK (max |delta| {max(c.max_abs_diff for c in checks):.2e} <= {args.tolerance:g})"
        )
    else:
        print("parity     : not verified (--no-verify)")
    print(f"wrote      : {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
