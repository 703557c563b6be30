"""COCO keypoint AP through pycocotools, for any skeleton.

* :func:`build_coco_gt` turns ground-truth :class:`~multipose.data.records.Instance` records
  (or any object with the same fields) into an in-memory COCO annotation dict.
* :func:`write_results` writes predictions in the standard COCO keypoint results format
  ``[{"image_id", "category_id", "keypoints": [x1, y1, s1, ...], "score"}]`` atomically.
* :func:`evaluate_keypoints` runs ``COCOeval(iouType="keypoints")`` with the skeleton's
  sigmas and returns the ten standard numbers as Python floats plus the printed summary.

Coordinates are image pixels. Following COCO, a ground-truth annotation is *ignored* (neither
a true positive nor a miss) when it is a crowd region or has no labelled keypoint; the
numbers COCOeval reports as ``-1`` (no ground truth in an area range, e.g. ``APM`` when all
people are large) are returned unchanged as ``-1.0``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COCO_METRIC_NAMES",
    "CocoEvalResult",
    "build_coco_gt",
    "evaluate_keypoints",
    "results_to_coco",
    "write_results",
]

#: Order of ``COCOeval.stats`` for ``iouType="keypoints"``.
COCO_METRIC_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")

CATEGORY_ID = 1


@dataclass
class CocoEvalResult:
    """Output of :func:`evaluate_keypoints`."""

    metrics: dict[str, float]  # keys of COCO_METRIC_NAMES
    summary: str  # what COCOeval.summarize() prints
    num_predictions: int
    num_gt: int  # non-ignored ground-truth instances


def _check_keypoints(kpts: Any, num_keypoints: int, where: str) -> np.ndarray:
    kpts = np.asarray(kpts, dtype=np.float64)
    if kpts.shape != (num_keypoints, 3):
        raise ValueError(
            f"{where}: keypoints have shape {kpts.shape}, expected ({num_keypoints}, 3) for this skeleton; "
            "check that the instances and the skeleton belong to the same dataset."
        )
    return kpts


def build_coco_gt(
    instances: Iterable[Any],
    keypoint_names: Sequence[str],
    category_name: str = "person",
    keypoints_fn: Callable[[Any], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Build a COCO keypoint ground-truth dict from instance records.

    Args:
        instances: ground-truth records with ``image_id``, ``image_path``, ``bbox`` (xywh px),
            ``keypoints`` ``[K, 3]``, ``area``, ``iscrowd``. Detection records (``ann_id == -1``)
            are rejected: AP needs the ground-truth annotations, not the detector boxes.
        keypoint_names: the skeleton's keypoint names (defines ``K``).
        category_name: name of the single category.
        keypoints_fn: optional ``fn(instance) -> [K, 3] array | None`` that supplies the
            keypoints instead of ``instance.keypoints`` (used for hidden cross-skeleton
            ground truth).

    Returns:
        ``{"images", "annotations", "categories"}``. Annotation ids are re-numbered ``1..N``
        (pycocotools treats id 0 as "unmatched"); the original ``ann_id`` is kept under
        ``"source_ann_id"``.
    """
    names = list(keypoint_names)
    k = len(names)
    images: dict[int, dict[str, Any]] = {}
    annotations: list[dict[str, Any]] = []
    for inst in instances:
        where = f"instance ann_id={getattr(inst, 'ann_id', '?')} image_id={getattr(inst, 'image_id', '?')}"
        ann_id = int(inst.ann_id)
        if ann_id < 0:
            raise ValueError(
                f"{where}: ann_id -1 marks a detection box, which is not ground truth. Build the COCO "
                "evaluator from the ground-truth annotations of the validation set."
            )
        kpts = _check_keypoints(keypoints_fn(inst) if keypoints_fn else inst.keypoints, k, where)
        bbox = np.asarray(inst.bbox, dtype=np.float64).reshape(-1)
        if bbox.shape[0] != 4:
            raise ValueError(f"{where}: bbox must have 4 values (x, y, w, h), got {bbox.shape[0]}")
        image_id = int(inst.image_id)
        if image_id not in images:
            images[image_id] = {"id": image_id, "file_name": str(getattr(inst, "image_path", ""))}
        labelled = kpts[:, 2] > 0
        flat = np.where(labelled[:, None], kpts, 0.0)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "source_ann_id": ann_id,
                "image_id": image_id,
                "category_id": CATEGORY_ID,
                "bbox": [float(v) for v in bbox],
                "area": float(inst.area),
                "iscrowd": int(bool(getattr(inst, "iscrowd", False))),
                "keypoints": [float(v) for v in flat.reshape(-1)],
                "num_keypoints": int(labelled.sum()),
            }
        )
    if not annotations:
        raise ValueError(
            "build_coco_gt: no ground-truth instances were given, so there is nothing to evaluate "
            "against; check the validation annotation file / dataset split."
        )
    return {
        "images": sorted(images.values(), key=lambda im: im["id"]),
        "annotations": annotations,
        "categories": [
            {
                "id": CATEGORY_ID,
                "name": category_name,
                "supercategory": category_name,
                "keypoints": names,
                "skeleton": [],
            }
        ],
    }


def results_to_coco(
    image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, category_id: int = CATEGORY_ID
) -> list[dict[str, Any]]:
    """Standard COCO keypoint results ``[{image_id, category_id, keypoints (K*3 flat), score}]``.

    Args:
        image_ids: ``[N]`` image ids.
        keypoints: ``[N, K, 3]`` ``(x, y, keypoint score)`` in image pixels.
        scores: ``[N]`` instance scores.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f"results_to_coco: keypoints must be [N, K, 3], got {keypoints.shape}")
    image_ids = np.asarray(image_ids).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (image_ids.shape[0] == scores.shape[0] == keypoints.shape[0]):
        raise ValueError(
            f"results_to_coco: {keypoints.shape[0]} poses, {image_ids.shape[0]} image ids, {scores.shape[0]} scores"
        )
    if not np.isfinite(keypoints).all() or not np.isfinite(scores).all():
        raise ValueError("results_to_coco: predictions contain NaN or inf; check the model output / decoding")
    return [
        {
            "image_id": int(i),
            "category_id": int(category_id),
            "keypoints": [float(v) for v in kp.reshape(-1)],
            "score": float(s),
        }
        for i, kp, s in zip(image_ids, keypoints, scores)
    ]


def write_results(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Write COCO results JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(results))  # one-shot C encoder; json.dump is ~10x slower
        from multipose.utils.run import file_mode

        os.chmod(tmp, file_mode())  # mkstemp gives 0600; honour the umask like any other written file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def evaluate_keypoints(
    gt: dict[str, Any], results: list[dict[str, Any]] | str | Path, sigmas: np.ndarray
) -> CocoEvalResult:
    """Run pycocotools' keypoint evaluation quietly.

    Args:
        gt: dict from :func:`build_coco_gt`.
        results: a results list or the path of a results JSON file.
        sigmas: ``[K]`` OKS sigmas of the skeleton (``params.kpt_oks_sigmas``).

    Returns:
        :class:`CocoEvalResult`; with no predictions every metric is ``0.0`` for area ranges
        that have ground truth (``-1.0`` otherwise) and nothing crashes.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not gt.get("annotations"):
        raise ValueError(
            "evaluate_keypoints: the ground truth has no annotations; nothing to evaluate against."
        )
    k = len(gt["categories"][0]["keypoints"])
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sigmas.shape[0] != k:
        raise ValueError(f"evaluate_keypoints: {sigmas.shape[0]} sigmas for a {k}-keypoint skeleton")

    if isinstance(results, (str, Path)):
        with open(results) as f:
            results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(
            f"evaluate_keypoints: COCO results must be a JSON list of objects, got {type(results).__name__}"
        )
    gt_images = {im["id"] for im in gt["images"]}
    for r in results:
        if r["image_id"] not in gt_images:
            raise ValueError(
                f"evaluate_keypoints: prediction for image_id={r['image_id']} which has no ground-truth "
                "image; predictions and ground truth must come from the same split."
            )
        if len(r["keypoints"]) != 3 * k:
            raise ValueError(
                f"evaluate_keypoints: prediction for image_id={r['image_id']} has {len(r['keypoints'])} "
                f"keypoint values, expected {3 * k} (K={k} times x, y, score)"
            )

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(gt["images"]),
                "categories": gt["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    metrics = {name: float(v) for name, v in zip(COCO_METRIC_NAMES, ev.stats)}
    num_gt = sum(1 for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0)
    return CocoEvalResult(
        metrics=metrics, summary=summary.getvalue(), num_predictions=len(results), num_gt=num_gt
    )
