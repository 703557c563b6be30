"""Person detections in the COCO results format -> Instances for validation with detected boxes.

A detection file is a JSON list of ``{image_id, category_id, bbox [x, y, w, h], score}``. Each
detection becomes an :class:`Instance` with ``ann_id = -1``, all-zero keypoints of the skeleton,
``score`` = detection score and ``area = w * h``. Boxes are not clipped (mmpose does not clip detections).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from ..records import DatasetFormatError, ImageRecord, Instance
from ._common import Loc, as_box, as_float, as_int, box_is_valid, check_policy, load_json, logger, require

__all__ = ["read_detections"]


def _path(entry: str | ImageRecord) -> str:
    return entry.path if isinstance(entry, ImageRecord) else str(entry)


def read_detections(
    det_file: str | Path,
    img_index: Mapping[int, str | ImageRecord],
    dataset: str,
    skeleton: str | Skeleton,
    score_thr: float = 0.0,
    category_ids: Iterable[int] | None = None,
    invalid_boxes: str = "error",
    log: logging.Logger | None = None,
) -> list[Instance]:
    """Read detections, keeping those with ``score >= score_thr`` (and ``category_id`` in ``category_ids``
    when given; mmpose keeps ``category_id == 1`` only). ``img_index`` maps ``image_id -> image path`` or
    :class:`ImageRecord` (``read_coco(..., return_images=True | "records")`` or ``read_coco_images``);
    detections on images without annotations are kept (they are false positives to the evaluation).
    Boxes of zero or negative size raise unless ``invalid_boxes="skip"`` (``data.invalid_boxes``).
    Dropped counts are logged.
    """
    log = log or logger
    check_policy(invalid_boxes)
    k = get_skeleton(skeleton).num_keypoints
    det_file = Path(det_file)
    data = load_json(det_file, "detection results")
    if not isinstance(data, list):
        raise DatasetFormatError(
            f"{det_file}: expected a JSON list of {{image_id, category_id, bbox, score}} (COCO results format), "
            f"got {type(data).__name__}"
        )
    if not data:
        raise DatasetFormatError(f"{det_file}: the detection list is empty; run the detector or use GT boxes")
    cats = None if category_ids is None else {int(c) for c in category_ids}

    out: list[Instance] = []
    n_low = n_cat = n_bad = 0
    for i, det in enumerate(data):
        loc = Loc(det_file, index=i, list_name="detections")
        image_id = as_int(require(det, "image_id", loc), loc, "image_id")
        if image_id not in img_index:
            raise DatasetFormatError(
                f"{loc}: image_id {image_id} is not in the image index ({len(img_index)} images); the detections "
                "belong to another split or annotation file - check det_file and ann_file in the data config"
            )
        if cats is not None:
            cat = as_int(require(det, "category_id", loc), loc, "category_id")
            if cat not in cats:
                n_cat += 1
                continue
        score = as_float(require(det, "score", loc), loc, "score")
        if score < score_thr:
            n_low += 1
            continue
        box = as_box(require(det, "bbox", loc), loc)
        if not box_is_valid(box):
            if invalid_boxes == "skip":
                n_bad += 1
                continue
            raise DatasetFormatError(
                f"{loc}: bbox {list(box)} has zero or negative width/height; fix the file or set "
                "data.invalid_boxes=skip to drop such detections (the count is logged)"
            )
        out.append(
            Instance(
                image_path=_path(img_index[image_id]),
                image_id=image_id,
                ann_id=-1,
                dataset=dataset,
                bbox=np.array(box, dtype=np.float32),
                keypoints=np.zeros((k, 3), dtype=np.float32),
                area=box[2] * box[3],
                score=score,
            )
        )
    log.info(
        "%s: %d of %d detections kept from %s (%d below score_thr=%g, %d other categories, %d invalid boxes)",
        dataset,
        len(out),
        len(data),
        det_file,
        n_low,
        score_thr,
        n_cat,
        n_bad,
    )
    return out
