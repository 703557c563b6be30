"""Top-down pose prediction on images, a folder or a video with a trained checkpoint.

    python -m multipose.predict CKPT INPUT --out DIR [--skeleton NAME|all] [--detections FILE] [--draw] [--project]

``INPUT`` is an image file, a folder of images (sorted by name) or a video (read with PyAV, the ``video`` extra).
Boxes come from ``--detections``: a COCO results list ``[{image_id, bbox, score}, ...]`` or a COCO dataset file
whose ``annotations`` give the boxes (``images`` maps ``file_name`` to ``id``; these ground-truth boxes are
clipped to the image like the COCO reader does, detections are not, as in mmpose); without it every image is one
whole-image box. Image ids: from the dataset file's ``images``; otherwise the file name's stem when it is an
integer (COCO's ``000000000139.jpg`` -> 139), else the position in the sorted input (the frame index for a video).

For every selected head (``--skeleton``: a skeleton or dataset name, or ``all``) the crops go through the
:class:`~multipose.inference.Predictor` (flip test, the head's codec, crop -> image) and the COCO protocol's
instance selection (re-scoring, OKS-NMS), and ``DIR/results_<skeleton>.json`` is written atomically in the COCO
keypoint results format. ``--draw`` writes ``DIR/draw/<skeleton>/<image>.jpg`` with the poses drawn.
An image without boxes contributes no result; a checkpoint without the skeleton is an error naming the ones it has.
``--project`` (a checkpoint trained with ``+bridge=acae``) writes the confidence-weighted ACAE projection of every
head's keypoints instead of the raw ones (:class:`multipose.bridges.acae.ACAEProjector`).
``--acae FILE`` (an AE file of ``python -m multipose.acae add-skeleton``) serves its added skeletons like heads
(:mod:`multipose.bridges.acae_serve`): ``--skeleton NAME`` (``NAME_acae`` when the checkpoint also has a head
NAME) writes ``results_<skeleton>.json`` from the AE heads' predictions mapped to NAME's joints.

``--prompt RESULTS`` (models trained with ``+prompt=extpose``): a COCO keypoint results list in one skeleton
(``--prompt-skeleton``, default: the only one of the model's prompt skeletons with that many joints) whose poses
prompt the model (docs/prompts.md); every selected head predicts from image + prompt. Without ``--detections`` each
prompt pose is one crop (its ``bbox``, else the box of its joints); with ``--detections`` each box takes the prompt
pose it overlaps most (IoU >= 0.3) and a box without one is predicted from the image alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "predict"]

log = logging.getLogger("multipose.predict")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class Frame:
    """One input image: a file (``path``) or a decoded video frame (``array``, RGB)."""

    name: str
    image_id: int
    path: Path | None = None
    array: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        from multipose.data.dataset import read_rgb

        return read_rgb(self.path)


# ------------------------------------------------------------------------------------------------- inputs
def _image_id(path: Path, position: int) -> int:
    return int(path.stem) if path.stem.isdigit() else position


def list_frames(source: Path) -> tuple[list[Frame] | None, int]:
    """The input's images as frames (``None`` for a video, which is streamed by :func:`video_frames`), and the
    frame count (0 when a video does not say)."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [Frame(p.name, _image_id(p, i), path=p) for i, p in enumerate(files)], len(files)
    if not source.is_file():
        raise FileNotFoundError(
            f"INPUT {source} does not exist; give an image, a folder of images or a video"
        )
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return [Frame(source.name, _image_id(source, 0), path=source)], 1
    if source.suffix.lower() in VIDEO_SUFFIXES:
        av = _import_av()
        with av.open(str(source)) as container:
            return None, int(container.streams.video[0].frames or 0)
    raise ValueError(
        f"INPUT {source}: unknown file type {source.suffix!r}; images {IMAGE_SUFFIXES}, videos {VIDEO_SUFFIXES}"
    )


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise ImportError(
            "reading a video needs PyAV: install the video extra (pip install 'multipose[video]')"
        ) from None
    return av


def video_frames(source: Path) -> Iterator[Frame]:
    av = _import_av()
    with av.open(str(source)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            yield Frame(f"frame_{i:06d}.jpg", i, array=frame.to_ndarray(format="rgb24"))


def read_boxes(
    path: Path | None, frames: Sequence[Frame] | None
) -> tuple[dict[int, list[dict]], dict[str, int]]:
    """``({image_id: [{bbox, score, area}, ...]}, {file_name: image_id})`` from a COCO detection results list or a
    COCO dataset file (``{}`` mapping for a results list)."""
    if path is None:
        return {}, {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--detections {path}: cannot read it as JSON ({err})") from None
    names: dict[str, int] = {}
    if isinstance(data, dict):
        if "annotations" not in data or "images" not in data:
            raise ValueError(f"--detections {path}: a COCO dataset file needs 'images' and 'annotations'")
        names = {Path(str(im["file_name"])).name: int(im["id"]) for im in data["images"]}
        dets = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
    elif isinstance(data, list):
        dets = data
    else:
        raise ValueError(f"--detections {path}: expected a COCO results list or a COCO dataset file")
    boxes: dict[int, list[dict]] = {}
    for i, det in enumerate(dets):
        missing = [k for k in ("image_id", "bbox") if k not in det]
        if missing:
            raise ValueError(f"--detections {path}: entry {i} lacks {missing}")
        x, y, w, h = (float(v) for v in det["bbox"])
        if w <= 0 or h <= 0:
            log.warning("--detections %s: entry %d has an empty box %s; skipped", path, i, det["bbox"])
            continue
        area = float(det.get("area", w * h))
        boxes.setdefault(int(det["image_id"]), []).append(
            {"bbox": [x, y, w, h], "score": float(det.get("score", 1.0)), "area": area, "clip": bool(names)}
        )
    return boxes, names


# ------------------------------------------------------------------------------------------------- model
def load_for_inference(ckpt: str | Path, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """``(model in eval mode, MixSpec, evaluation options)`` of a checkpoint (safe reading, no pickled code)."""
    from multipose import load_pose_model
    from multipose.inference import MixSpec
    from multipose.models.checkpoints import read_checkpoint

    model = load_pose_model(ckpt, device=device)
    hparams = read_checkpoint(ckpt).get("hyper_parameters") or {}
    if hparams.get("mix"):
        spec = MixSpec.from_dict(hparams["mix"], where=f"{ckpt}: hyper_parameters['mix']")
    else:
        config = hparams.get("model_config") or {
            "backbone": {"img_size": list(model.backbone.img_size)},
            "heads": {n: {"skeleton": model.head_skeletons.get(n, n)} for n in model.dataset_names},
        }
        spec = MixSpec.from_model_config(config)
        log.info("%s records no data mix; assuming UDP codecs and heatmaps of 1/4 the input", ckpt)
    return model, spec, dict(hparams.get("evaluation") or {})


class Prompts:
    """``--prompt``: prompt poses by image id, their crops' prompt tensors (see the module docstring)."""

    def __init__(self, model: Any, poses: dict[int, list], skeleton: Any) -> None:
        self.poses, self.skeleton = poses, skeleton
        self.row, self.tags = model.prompt.skeleton_layout(skeleton.name)

    def boxes_for(self, image_id: int, dets: list[dict] | None) -> list[dict]:
        """``dets`` with the best-overlapping prompt pose each; without ``dets``, one box per prompt pose."""
        from multipose.data.prompts import _box_of, match_result

        poses = self.poses.get(image_id, [])
        if dets is not None:
            return [dict(d, prompt=match_result(np.asarray(d["bbox"]), poses, 0.3)) for d in dets]
        out = []
        for kp, score, box in poses:
            box = _box_of(kp) if box is None else box
            if box[2] > 0 and box[3] > 0:
                out.append(
                    {
                        "bbox": [float(v) for v in box],
                        "score": score,
                        "area": float(box[2] * box[3]),
                        "prompt": kp,
                    }
                )
        return out

    def pack(self, kp: np.ndarray | None, matrix: np.ndarray) -> dict[str, Any]:
        from multipose.data.geometry import warp_points
        from multipose.data.prompts import pack_prompt

        crop = None
        if kp is not None:
            crop = np.array(kp, np.float32)
            crop[:, :2] = warp_points(kp[:, :2].astype(np.float64), matrix)
            crop[kp[:, 2] <= 0] = 0
        return pack_prompt(crop, self.tags, self.row, self.skeleton.num_keypoints)


def read_prompts(model: Any, path: Path, skeleton: str | None) -> Prompts:
    """Read ``--prompt`` for a prompt-trained model (skeleton from ``--prompt-skeleton`` or the joint count)."""
    from multipose.data.prompts import load_results
    from multipose.skeletons import get_skeleton

    encoder = getattr(model, "prompt", None)
    if encoder is None:
        raise SystemExit(
            f"error: --prompt {path}: this checkpoint has no prompt tokens (train with +prompt=extpose)"
        )
    if skeleton is None:
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SystemExit(f"error: --prompt {path}: cannot read it as JSON ({err})") from None
        k = len(rows[0].get("keypoints", [])) // 3 if isinstance(rows, list) and rows else 0
        fits = [s for s in encoder.skeletons if get_skeleton(s).num_keypoints == k]
        if len(fits) != 1:
            raise SystemExit(
                f"error: --prompt {path}: poses of {k} joints; give --prompt-skeleton, one of {encoder.skeletons}"
            )
        skeleton = fits[0]
    sk = get_skeleton(skeleton)
    try:
        encoder.skeleton_layout(sk.name)
        poses = load_results(path, sk, "--prompt")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return Prompts(model, poses, sk)


def select_heads(model: Any, spec: Any, skeleton: str, added: Mapping[str, Any] | None = None) -> list[str]:
    """The heads for ``--skeleton`` (a skeleton name, a head/dataset name, or ``all``); ``added``: skeletons of an
    ``--acae`` file (``{name: AddedSkeleton}``), selected by their name or skeleton name too (``all``: every one)."""
    added = dict(added or {})
    if skeleton == "all":
        return list(spec.names) + list(added)
    heads = [n for n in spec.names if n == skeleton or spec.skeletons[n].name == skeleton]
    heads += [n for n, a in added.items() if n == skeleton or a.skeleton.name == skeleton]
    if not heads:
        have = ", ".join(f"{spec.skeletons[n].name} (head {n})" for n in spec.names)
        have += "".join(f", {a.skeleton.name} (added {n})" for n, a in added.items())
        raise SystemExit(f"error: the checkpoint has no head for skeleton {skeleton!r}; it has: {have}")
    return heads


# ------------------------------------------------------------------------------------------------- predict
def predict(
    ckpt: str | Path,
    source: str | Path,
    out: str | Path,
    skeleton: str = "all",
    detections: str | Path | None = None,
    draw: bool = False,
    batch_size: int = 32,
    draw_thr: float = 0.3,
    device: str = "cpu",
    progress: bool = True,
    project: bool = False,
    prompt: str | Path | None = None,
    prompt_skeleton: str | None = None,
    acae: str | Path | None = None,
    acae_skeleton: str | None = None,
) -> dict[str, Path]:
    """Run the checkpoint on ``source``; returns ``{head: results file}`` (see the module docstring)."""
    import torch

    from multipose.data.formats._common import clip_box
    from multipose.data.records import Instance
    from multipose.data.transforms import TopDownTransform
    from multipose.evaluation.base import skeleton_sigmas
    from multipose.evaluation.coco import results_to_coco, write_results
    from multipose.evaluation.nms import select_poses
    from multipose.inference import Predictor

    source, out = Path(source), Path(out)
    model, spec, opts = load_for_inference(ckpt, device)
    added = {}
    if acae is not None:
        from multipose.bridges.acae_model import AEFileError
        from multipose.bridges.acae_serve import load_added_skeletons

        try:
            added = load_added_skeletons(acae, mix=spec, skeletons=acae_skeleton)
        except AEFileError as err:
            raise SystemExit(f"error: --acae {err}") from None
    heads = select_heads(model, spec, skeleton, added)
    added = {n: a for n, a in added.items() if n in heads}
    projector = None
    if project:
        from multipose.bridges.acae import projector_from_checkpoint

        projector = projector_from_checkpoint(ckpt)
    predictor = Predictor(
        model, spec, flip_test=opts.get("flip_test", True), projector=projector, added=added
    )
    frames, total = list_frames(source)
    boxes, names = read_boxes(Path(detections) if detections else None, frames)
    prompts = None if prompt is None else read_prompts(model, Path(prompt), prompt_skeleton)
    stream: Iterator[Frame] = iter(frames) if frames is not None else video_frames(source)
    if names:
        stream = (Frame(f.name, names.get(f.name, f.image_id), f.path, f.array) for f in stream)
    groups: dict[bool, list[str]] = {}
    for h in heads:  # heads whose crops share the affine kind share the crops (an added skeleton: its AE's)
        source = added[h].heads[0] if h in added else h
        groups.setdefault(spec.dataset(source).use_udp, []).append(h)
    transforms = {
        udp: TopDownTransform(
            spec.input_size, predictor.skeleton(hs[0]), train=False, use_udp=udp, photometric=False
        )
        for udp, hs in groups.items()
    }
    found: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    meta: list[tuple[int, float, float]] = []  # (image id, box score, OKS-NMS area) per crop, in order
    drawn: dict[int, Frame] = {}

    def run(crops: dict[bool, list[dict]]) -> None:
        for udp, hs in groups.items():
            items = crops[udp]
            images = torch.from_numpy(np.stack([c["image"] for c in items])).to(device)
            center = np.stack([c["center"] for c in items])
            scale = np.stack([c["scale"] for c in items])
            batch_prompt = None
            if prompts is not None:
                packed = [c["prompt"] for c in items]
                batch_prompt = {k: torch.stack([q[k] for q in packed]).to(device) for k in packed[0]}
            for h, p in predictor.predict(
                images, center, scale, hs, use_udp=udp, project=project, prompt=batch_prompt
            ).items():
                found[h].append(p.keypoints)

    pending: dict[bool, list[dict]] = {udp: [] for udp in groups}
    bar = _progress(total, progress)
    for frame in stream:
        image = frame.rgb()
        h_img, w_img = image.shape[:2]
        dets = (
            boxes.get(frame.image_id, [])
            if detections
            else [
                {"bbox": [0.0, 0.0, float(w_img), float(h_img)], "score": 1.0, "area": float(w_img * h_img)}
            ]
        )
        if prompts is not None:
            dets = prompts.boxes_for(frame.image_id, dets if detections else None)
        if draw:
            if frame.array is not None:  # a video frame: keep it on disk, not in memory, until it is drawn
                frame = _spill(frame, out / "draw" / ".frames")
            drawn[frame.image_id] = frame
        for det in dets:
            if det.get("clip"):  # ground-truth boxes are clipped to the image, as the COCO reader does
                det = dict(det, bbox=list(clip_box(tuple(det["bbox"]), w_img, h_img)))
            inst = Instance(
                image_path=str(frame.path or frame.name),
                image_id=frame.image_id,
                ann_id=-1,
                dataset="predict",
                bbox=det["bbox"],
                keypoints=np.zeros((predictor.skeleton(heads[0]).num_keypoints, 3)),
                area=det["area"],
                score=det["score"],
            )
            for udp, transform in transforms.items():
                crop = transform(image, inst, None)
                if prompts is not None:
                    crop["prompt"] = prompts.pack(det.get("prompt"), crop["matrix"])
                pending[udp].append(crop)
            # OKS-NMS area = prod(scale) of the padded, aspect-fixed box (as mmpose and validation)
            scale = np.asarray(pending[udp][-1]["scale"], np.float64)
            meta.append((frame.image_id, det["score"], float(scale[0] * scale[1])))
            if len(pending[next(iter(groups))]) >= batch_size:
                run(pending)
                pending = {udp: [] for udp in groups}
        bar.update(1)
    if pending[next(iter(groups))]:
        run(pending)
    bar.close()

    ids = np.array([m[0] for m in meta], np.int64)
    box_scores = np.array([m[1] for m in meta], np.float64)
    areas = np.array([m[2] for m in meta], np.float64)
    written: dict[str, Path] = {}
    skeleton_names = [predictor.skeleton(h).name for h in heads]
    for h in heads:
        skel = predictor.skeleton(h)
        kpts = np.concatenate(found[h]) if found[h] else np.zeros((0, skel.num_keypoints, 3), np.float32)
        kept, scores = select_poses(
            kpts,
            box_scores,
            areas,
            ids,
            skeleton_sigmas(skel),
            opts.get("vis_thr", 0.2),
            opts.get("oks_nms_thr", 0.9),
            soft=bool(opts.get("soft_nms", False)),
        )
        label = skel.name if skeleton_names.count(skel.name) == 1 else f"{skel.name}_{h}"
        results = results_to_coco(ids[kept], kpts[kept], scores[kept]) if kept.size else []
        written[h] = write_results(results, out / f"results_{label}.json")
        log.info("%s: %d poses -> %s", h, len(results), written[h])
        if draw:
            _draw(out / "draw" / label, drawn, ids[kept], kpts[kept], skel, draw_thr)
    if draw:
        shutil.rmtree(out / "draw" / ".frames", ignore_errors=True)
    return written


def _spill(frame: Frame, folder: Path) -> Frame:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (Path(frame.name).stem + ".png")
    cv2.imwrite(str(path), cv2.cvtColor(frame.array, cv2.COLOR_RGB2BGR))
    return Frame(frame.name, frame.image_id, path=path)


def _draw(
    folder: Path, frames: dict[int, Frame], ids: np.ndarray, kpts: np.ndarray, skeleton: Any, thr: float
) -> None:
    """Write every frame with its poses (joints with score > ``thr``) drawn, atomically, as ``<stem>.jpg``."""
    import cv2

    from multipose.inference.draw import draw_pose

    folder.mkdir(parents=True, exist_ok=True)
    for image_id, frame in frames.items():
        image = np.ascontiguousarray(frame.rgb()).copy()
        for kp in kpts[ids == image_id]:
            draw_pose(image, kp, skeleton, kp[:, 2] > thr)
        path = folder / (Path(frame.name).stem + ".jpg")
        tmp = path.with_name(f".{path.name}.tmp.jpg")
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        tmp.replace(path)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total or None, unit="img", desc="predict")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0), so the ``multipose-predict`` console script exits cleanly."""
    parser = argparse.ArgumentParser(
        prog="python -m multipose.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "ckpt", help="checkpoint: Lightning .ckpt from training, multipose or official weights"
    )
    parser.add_argument("input", help="an image, a folder of images or a video")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--skeleton", default="all", help="skeleton or head (dataset) name, or 'all' (default)"
    )
    parser.add_argument("--detections", default=None, help="COCO-format boxes (default: one whole-image box)")
    parser.add_argument("--draw", action="store_true", help="also write images with the poses drawn")
    parser.add_argument("--draw-thr", type=float, default=0.3, help="keypoint score needed to be drawn")
    parser.add_argument("--batch", type=int, default=32, help="crops per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--project", action="store_true", help="ACAE projection of the keypoints (a +bridge=acae checkpoint)"
    )
    parser.add_argument("--prompt", default=None, help="COCO keypoint results whose poses prompt the model")
    parser.add_argument("--prompt-skeleton", default=None, help="skeleton of the --prompt poses")
    parser.add_argument(
        "--acae",
        default=None,
        help="AE file of `python -m multipose.acae add-skeleton`: its added skeletons are served like heads "
        "(select one with --skeleton NAME; NAME_acae when the checkpoint has a head NAME)",
    )
    parser.add_argument(
        "--acae-skeleton", default=None, help="skeleton YAML of the --acae skeleton when it is not a built-in"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    predict(
        args.ckpt,
        args.input,
        args.out,
        args.skeleton,
        args.detections,
        args.draw,
        args.batch,
        args.draw_thr,
        args.device,
        progress=not args.no_progress,
        project=args.project,
        prompt=args.prompt,
        prompt_skeleton=args.prompt_skeleton,
        acae=args.acae,
        acae_skeleton=args.acae_skeleton,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
