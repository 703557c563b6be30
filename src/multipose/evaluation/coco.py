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

Protocol switches (each reproduces a reference tool exactly with pycocotools' matching code):

* ``drop_zero_score`` - drop predictions none of whose keypoint scores (in the evaluated part) is
  above 0 before matching: xtcocotools (mmpose's evaluator for every COCO-style set, the official
  COCO-WholeBody tool). pycocotools and crowdposetools keep them (as false positives).
* ``use_area=False`` in :func:`build_coco_gt` - the OKS scale and the area ranges use
  ``0.53 * w * h`` of the ground-truth box instead of ``area``: xtcocotools ``use_area=False``
  (mmpose's AIC and CrowdPose evaluation) and crowdposetools.
* ``part`` - score a subset of the keypoints with their own sigmas; an instance is ignored when the
  part has no labelled keypoint: xtcocotools' ``keypoints_body/foot/face/lefthand/righthand``.
* ``crowd_thresholds`` - CrowdPose's AP_easy / AP_medium / AP_hard over the images whose
  ``crowdIndex`` is ``< t0``, in ``[t0, t1)`` and ``>= t1`` (crowdposetools and xtcocotools call
  ``get_type_result(first=0.2, second=0.8)``), each the plain mean of the precision array, rounded
  to 4 decimals as there.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AREA_FROM_BOX",
    "COCO_METRIC_NAMES",
    "CROWDPOSE_METRIC_NAMES",
    "CROWD_TYPES",
    "CocoEvalResult",
    "build_coco_gt",
    "evaluate_keypoints",
    "results_to_coco",
    "slice_keypoints",
    "write_results",
]

#: Order of ``COCOeval.stats`` for ``iouType="keypoints"``.
COCO_METRIC_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")

#: What crowdposetools / xtcocotools (mmpose's CrowdPose evaluation) report, in their order.
CROWDPOSE_METRIC_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "AR",
    "AR50",
    "AR75",
    "AP_easy",
    "AP_medium",
    "AP_hard",
)
CROWD_TYPES: tuple[str, ...] = ("easy", "medium", "hard")

#: OKS scale = AREA_FROM_BOX * box w * h when a dataset has no segmentation area
#: (xtcocotools ``use_area=False``, crowdposetools).
AREA_FROM_BOX = 0.53

CATEGORY_ID = 1

log = logging.getLogger(__name__)


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
    images: Iterable[int] | Mapping[int, Mapping[str, Any]] | None = None,
    use_area: bool = True,
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
        images: every image id of the annotation file (its ``images`` list), or a mapping
            ``image_id -> extra image fields`` (e.g. ``{"crowdIndex": 0.4}``). Images without
            annotations must be listed for predictions on them (a detection file covers every
            image) to count as false positives, as pycocotools does with the official file.
            Images of the instances are always included.
        use_area: ``False`` replaces every annotation's ``area`` by ``0.53 * w * h`` of its box
            (see the module docstring); the file's area is kept under ``"source_area"``.

    An instance's ``crowd_index`` attribute or ``extra["crowdIndex"]`` (CrowdPose's per-image crowdIndex, as
    the CrowdPose reader keeps it), when present, becomes the image's ``crowdIndex``.

    Returns:
        ``{"images", "annotations", "categories"}``. Annotation ids are re-numbered ``1..N``
        (pycocotools treats id 0 as "unmatched"); the original ``ann_id`` is kept under
        ``"source_ann_id"``.
    """
    names = list(keypoint_names)
    k = len(names)
    image_table: dict[int, dict[str, Any]] = {}
    if images is not None:
        extra = images if isinstance(images, Mapping) else {int(i): {} for i in images}
        for i, fields in extra.items():
            image_table[int(i)] = {**dict(fields or {}), "id": int(i)}
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
        image = image_table.setdefault(image_id, {"id": image_id})
        image.setdefault("file_name", str(getattr(inst, "image_path", "")))
        crowd_index = getattr(inst, "crowd_index", None)
        if crowd_index is None:
            crowd_index = (getattr(inst, "extra", None) or {}).get(
                "crowdIndex"
            )  # the CrowdPose reader's field
        if crowd_index is not None:
            image["crowdIndex"] = float(crowd_index)
        labelled = kpts[:, 2] > 0
        flat = np.where(labelled[:, None], kpts, 0.0)
        area = float(inst.area) if use_area else AREA_FROM_BOX * float(bbox[2]) * float(bbox[3])
        annotations.append(
            {
                "id": len(annotations) + 1,
                "source_ann_id": ann_id,
                "image_id": image_id,
                "category_id": CATEGORY_ID,
                "bbox": [float(v) for v in bbox],
                "area": area,
                "source_area": float(inst.area),
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
        "images": sorted(image_table.values(), key=lambda im: im["id"]),
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


def slice_keypoints(
    gt: dict[str, Any], results: list[dict[str, Any]], indices: Sequence[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth and results restricted to the keypoints ``indices`` (a part of the skeleton).

    Each annotation's ``num_keypoints`` is recounted over the part, so an instance without a
    labelled keypoint in the part is ignored (xtcocotools' per-part rule). Inputs are not modified.
    """
    idx = np.asarray(list(indices), dtype=np.int64)
    k = len(gt["categories"][0]["keypoints"])
    if idx.size == 0 or idx.min() < 0 or idx.max() >= k:
        raise ValueError(
            f"slice_keypoints: part indices must be a non-empty subset of 0..{k - 1}, got {idx.tolist()}"
        )

    def part(flat: Sequence[float]) -> np.ndarray:
        return np.asarray(flat, dtype=np.float64).reshape(k, 3)[idx]

    annotations = []
    for ann in gt["annotations"]:
        kp = part(ann["keypoints"])
        annotations.append(
            {
                **ann,
                "keypoints": [float(v) for v in kp.reshape(-1)],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
            }
        )
    category = {**gt["categories"][0], "keypoints": [gt["categories"][0]["keypoints"][i] for i in idx]}
    sliced = {**gt, "annotations": annotations, "categories": [category]}
    res = [{**r, "keypoints": [float(v) for v in part(r["keypoints"]).reshape(-1)]} for r in results]
    return sliced, res


def _crowd_type_ap(ev: Any, gt: dict[str, Any], thresholds: Sequence[float]) -> dict[str, float]:
    """AP per crowd type, the crowdposetools / xtcocotools ``get_type_result`` computation."""
    t0, t1 = (float(t) for t in thresholds)
    missing = [im["id"] for im in gt["images"] if "crowdIndex" not in im]
    if len(missing) == len(gt["images"]):
        raise ValueError(
            "CrowdPose AP_easy/medium/hard need the images' crowdIndex and no image has one; read the dataset "
            "with the CrowdPose reader (it keeps 'crowdIndex'), or set the evaluation option crowd_thresholds: null."
        )
    if missing:
        log.warning(
            "CrowdPose crowd types: %d images without crowdIndex (e.g. %s) are left out of AP_easy/medium/hard",
            len(missing),
            missing[:5],
        )
    groups: dict[str, list[int]] = {t: [] for t in CROWD_TYPES}
    for im in gt["images"]:
        if "crowdIndex" not in im:
            continue
        c = float(im["crowdIndex"])
        groups["easy" if c < t0 else "medium" if c < t1 else "hard"].append(int(im["id"]))
    out = {}
    for name in CROWD_TYPES:
        ev.params.imgIds = groups[name]
        ev.evaluate()
        ev.accumulate()
        out[f"AP_{name}"] = float(round(np.mean(ev.eval["precision"][:, :, :, 0, :]), 4))
    return out


def evaluate_keypoints(
    gt: dict[str, Any],
    results: list[dict[str, Any]] | str | Path,
    sigmas: np.ndarray,
    drop_zero_score: bool = False,
    part: Sequence[int] | None = None,
    crowd_thresholds: Sequence[float] | None = None,
    det_area_keypoints: Sequence[int] | None = None,
) -> CocoEvalResult:
    """Run pycocotools' keypoint evaluation quietly.

    Args:
        gt: dict from :func:`build_coco_gt`.
        results: a results list or the path of a results JSON file.
        sigmas: ``[K]`` OKS sigmas of the skeleton (``params.kpt_oks_sigmas``).
        drop_zero_score: drop predictions without any keypoint score above 0 (xtcocotools).
        part: keypoint indices to evaluate (``sigmas`` are those of the whole skeleton and are
            sliced too); None evaluates every keypoint.
        crowd_thresholds: ``(t0, t1)``: report CrowdPose's keys (:data:`CROWDPOSE_METRIC_NAMES`)
            instead of COCO's; needs ``crowdIndex`` on every image.
        det_area_keypoints: a prediction's area (which decides the area range of an unmatched
            prediction: APM/APL) is the extent of these keypoints instead of all evaluated ones
            (xtcocotools takes it from the ``keypoints`` field, COCO-WholeBody's body part).

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
                f"evaluate_keypoints: prediction for image_id={r['image_id']} which is not in the ground "
                "truth's image list; predictions and ground truth must come from the same split, and "
                "images without annotations must be listed (build_coco_gt(images=...) / the evaluator "
                "option image_ids)."
            )
        if len(r["keypoints"]) != 3 * k:
            raise ValueError(
                f"evaluate_keypoints: prediction for image_id={r['image_id']} has {len(r['keypoints'])} "
                f"keypoint values, expected {3 * k} (K={k} times x, y, score)"
            )

    results = [dict(r) for r in results]  # pycocotools' loadRes writes into the result dicts
    if det_area_keypoints is not None:
        sel = np.asarray(list(det_area_keypoints), dtype=np.int64)
        for r in results:
            xy = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)[sel, :2]
            r["_det_area"] = float(np.prod(xy.max(0) - xy.min(0)))
    if part is not None:
        gt, results = slice_keypoints(gt, results, part)
        sigmas = sigmas[np.asarray(list(part), dtype=np.int64)]
    if drop_zero_score:
        results = [r for r in results if np.any(np.asarray(r["keypoints"][2::3], dtype=np.float64) > 0)]

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
            for ann in coco_dt.dataset["annotations"]:
                if "_det_area" in ann:
                    ann["area"] = ann.pop("_det_area")
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
    if crowd_thresholds is not None:
        metrics = {k: metrics[k] for k in CROWDPOSE_METRIC_NAMES if k in metrics}
        with contextlib.redirect_stdout(out):
            metrics.update(_crowd_type_ap(ev, gt, crowd_thresholds))
        summary.write("".join(f" {k} = {metrics[k]:.4f}\n" for k in ("AP_easy", "AP_medium", "AP_hard")))
    num_gt = sum(1 for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0)
    return CocoEvalResult(
        metrics=metrics, summary=summary.getvalue(), num_predictions=len(results), num_gt=num_gt
    )
