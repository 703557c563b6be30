"""COCO-style keypoint JSON -> :class:`~multipose.data.records.Instance`.

Covers every dataset distributed in (or converted to) the COCO keypoint format: COCO person keypoints,
AIC (COCO-style conversion), AP-10K, APT-36K, CrowdPose, OCHuman, Halpe (plain ``keypoints`` of
length ``3K``) and COCO-WholeBody (``layout="coco_wholebody"``: body ``keypoints`` 17 + ``foot_kpts`` 6
+ ``face_kpts`` 68 + ``lefthand_kpts`` 21 + ``righthand_kpts`` 21, assembled in that order = the
official 133-keypoint order).

Conventions:

* Keypoints stay in image pixels as stored (COCO coordinates, no shift); ``v`` as stored.
* ``bbox`` is the annotation ``bbox`` (xywh) with its corners clipped to ``[0, W-1] x [0, H-1]`` when
  the image entry has ``width``/``height`` (as mmpose does). A box of zero or negative size (before
  or after clipping) raises :class:`DatasetFormatError` unless ``invalid_boxes="skip"``, which drops
  it and logs the count.
* ``area`` is the annotation ``area`` when present and positive (COCO's segmentation area, which the
  COCO keypoint evaluation uses), else the box area.
* Crowd annotations are kept with ``iscrowd=True`` (evaluation needs them); use
  :func:`multipose.data.formats.training_instances` to drop them, and instances without any labelled
  keypoint, for training.
* Optional per-annotation ``gt_all`` ``{skeleton_name: flat [K*3] list}`` (written by the synthetic
  world) becomes ``Instance.extra_gt[skeleton_name]`` as ``[K, 3]`` arrays.
* No category filtering: every annotation in the file is read (AP-10K has one category per species,
  all with the same keypoints).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ...skeletons import Skeleton, SkeletonError, get_skeleton
from ..records import DatasetFormatError, Instance
from ._common import (
    as_box,
    as_float_array,
    as_int,
    box_is_valid,
    check_images_exist,
    check_policy,
    clip_box,
    load_json,
    logger,
    require,
    where,
)

__all__ = ["WHOLEBODY_PARTS", "read_coco", "read_coco_images"]

#: COCO-WholeBody annotation fields in assembly order, with their keypoint counts.
WHOLEBODY_PARTS: tuple[tuple[str, int], ...] = (
    ("keypoints", 17),
    ("foot_kpts", 6),
    ("face_kpts", 68),
    ("lefthand_kpts", 21),
    ("righthand_kpts", 21),
)
LAYOUTS = ("coco", "coco_wholebody")


def _parse_images(data: dict, ann_file: Path, img_dir: str | Path) -> dict[int, tuple[str, float, float]]:
    images = require(data, "images", str(ann_file), "a COCO file lists its images under 'images'")
    if not isinstance(images, list):
        raise DatasetFormatError(f"{ann_file}: field 'images' must be a list, got {type(images).__name__}")
    out: dict[int, tuple[str, float, float]] = {}
    for i, img in enumerate(images):
        loc = f"{ann_file}: images[{i}]"
        img_id = as_int(require(img, "id", loc), loc, "id")
        file_name = require(img, "file_name", loc)
        if not isinstance(file_name, str) or not file_name:
            raise DatasetFormatError(f"{loc} (id={img_id}): field 'file_name' must be a non-empty string")
        if img_id in out:
            raise DatasetFormatError(
                f"{loc}: duplicate image id {img_id} (file '{file_name}' and '{out[img_id][0]}'); image ids must be unique"
            )
        width = img.get("width")
        height = img.get("height")
        out[img_id] = (
            os.path.join(str(img_dir), file_name),
            float(width) if isinstance(width, (int, float)) else 0.0,
            float(height) if isinstance(height, (int, float)) else 0.0,
        )
    return out


def read_coco_images(ann_file: str | Path, img_dir: str | Path, check_images: bool = False) -> dict[int, str]:
    """Map ``image_id -> image path`` from the ``images`` list of a COCO-style file.

    Works for image-only files (e.g. COCO test-dev ``image_info``) too; use it with
    :func:`~multipose.data.formats.read_detections`.
    """
    ann_file = Path(ann_file)
    data = load_json(ann_file, "COCO-style annotation")
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{ann_file}: expected a JSON object with 'images', got {type(data).__name__}")
    index = {k: v[0] for k, v in _parse_images(data, ann_file, img_dir).items()}
    if check_images:
        check_images_exist(index.values(), ann_file, img_dir)
    return index


def _keypoints(ann: dict, loc: object, layout: str, k: int, skel_name: str) -> np.ndarray:
    if layout == "coco":
        raw = require(ann, "keypoints", loc)
        flat = as_float_array(raw, loc, "keypoints")
        if flat.size != 3 * k:
            raise DatasetFormatError(
                f"{loc}: field 'keypoints' has {flat.size} values ({flat.size / 3:g} keypoints) but skeleton "
                f"'{skel_name}' has {k} keypoints ({3 * k} values); set the dataset's skeleton to the one the "
                "file was annotated with (and layout='coco_wholebody' for COCO-WholeBody files)"
            )
        return flat.reshape(k, 3)
    parts = []
    for field, n in WHOLEBODY_PARTS:
        raw = require(
            ann, field, loc,
            "COCO-WholeBody annotations carry keypoints, foot_kpts, face_kpts, lefthand_kpts and "
            "righthand_kpts; use layout='coco' for files with one plain 'keypoints' list",
        )
        flat = as_float_array(raw, loc, field)
        if flat.size != 3 * n:
            raise DatasetFormatError(
                f"{loc}: field '{field}' has {flat.size} values, COCO-WholeBody expects {n} keypoints ({3 * n} values)"
            )
        parts.append(flat.reshape(n, 3))
    return np.concatenate(parts, axis=0)


def _extra_gt(ann: dict, loc: object) -> dict[str, np.ndarray]:
    raw = ann.get("gt_all")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DatasetFormatError(f"{loc}: field 'gt_all' must map skeleton name -> flat [K*3] list")
    out = {}
    for name, values in raw.items():
        flat = as_float_array(values, loc, f"gt_all.{name}")
        if flat.size % 3:
            raise DatasetFormatError(f"{loc}: field 'gt_all.{name}' has {flat.size} values, not a multiple of 3")
        try:
            expected = get_skeleton(name).num_keypoints
        except SkeletonError:
            expected = None  # a skeleton unknown to this registry: keep as written
        if expected is not None and flat.size != 3 * expected:
            raise DatasetFormatError(
                f"{loc}: field 'gt_all.{name}' has {flat.size // 3} keypoints but skeleton '{name}' has {expected}"
            )
        out[str(name)] = flat.reshape(-1, 3)
    return out


def read_coco(
    ann_file: str | Path,
    img_dir: str | Path,
    skeleton: str | Skeleton,
    dataset: str,
    layout: str = "coco",
    check_images: bool = True,
    return_images: bool = False,
    invalid_boxes: str = "error",
    log: logging.Logger | None = None,
) -> list[Instance] | tuple[list[Instance], dict[int, str]]:
    """Read a COCO-style keypoint file into instances (crowd annotations kept, flagged).

    Args:
        ann_file: the JSON file (``images``, ``annotations``; ``categories`` is not needed).
        img_dir: directory that ``images[].file_name`` is relative to.
        skeleton: skeleton name (or :class:`Skeleton`) the file is annotated with.
        dataset: dataset name from the mix config, stored in every instance.
        layout: ``"coco"`` (one ``keypoints`` list of ``3K`` values) or ``"coco_wholebody"``.
        check_images: raise if an annotated image file does not exist.
        return_images: also return ``{image_id: image_path}`` for every image entry (for detections).
        invalid_boxes: ``"error"`` (default) or ``"skip"`` (drop zero/negative-size boxes, logged).
        log: logger for skip counts (default ``multipose.data.formats``).
    """
    log = log or logger
    check_policy(invalid_boxes)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    skel = get_skeleton(skeleton)
    k = skel.num_keypoints
    ann_file = Path(ann_file)
    if layout == "coco_wholebody" and k != 133:
        raise DatasetFormatError(
            f"{ann_file}: layout='coco_wholebody' assembles 133 keypoints but skeleton '{skel.name}' has {k}; "
            "use skeleton 'coco_wholebody'"
        )

    data = load_json(ann_file, "COCO-style annotation")
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{ann_file}: expected a JSON object with 'images' and 'annotations', got {type(data).__name__}"
        )
    images = _parse_images(data, ann_file, img_dir)
    anns = require(data, "annotations", str(ann_file), "a COCO keypoint file lists instances under 'annotations'")
    if not isinstance(anns, list):
        raise DatasetFormatError(f"{ann_file}: field 'annotations' must be a list, got {type(anns).__name__}")
    if not anns:
        raise DatasetFormatError(
            f"{ann_file}: the annotation list is empty; point the dataset at a file with keypoint annotations "
            "(for image-only files use read_coco_images + read_detections)"
        )

    instances: list[Instance] = []
    n_bad_box = 0
    seen_ids: set[int] = set()
    for idx, ann in enumerate(anns):
        loc0 = where(ann_file, index=idx)
        ann_id = as_int(require(ann, "id", loc0), loc0, "id")
        loc = where(ann_file, ann_id, idx)
        if ann_id in seen_ids:
            raise DatasetFormatError(f"{loc}: duplicate annotation id {ann_id}; annotation ids must be unique")
        seen_ids.add(ann_id)
        image_id = as_int(require(ann, "image_id", loc), loc, "image_id")
        if image_id not in images:
            raise DatasetFormatError(
                f"{loc}: image_id {image_id} has no entry in 'images'; the file is inconsistent - "
                "re-export it or remove the annotation"
            )
        path, width, height = images[image_id]
        box = as_box(require(ann, "bbox", loc), loc)
        clipped = clip_box(box, width, height)
        if not box_is_valid(box) or not box_is_valid(clipped):
            if invalid_boxes == "skip":
                n_bad_box += 1
                continue
            reason = "zero or negative width/height" if not box_is_valid(box) else "no area inside the image"
            raise DatasetFormatError(
                f"{loc}: bbox {list(box)} has {reason} (image {width:g}x{height:g}); fix the annotation or "
                "pass invalid_boxes='skip' to drop such boxes (the count is logged)"
            )
        kps = _keypoints(ann, loc, layout, k, skel.name)
        area_raw = ann.get("area")
        area = float(area_raw) if isinstance(area_raw, (int, float)) and area_raw > 0 else box[2] * box[3]
        instances.append(
            Instance(
                image_path=path,
                image_id=image_id,
                ann_id=ann_id,
                dataset=dataset,
                bbox=np.array(clipped, dtype=np.float32),
                keypoints=kps,
                area=area,
                iscrowd=bool(ann.get("iscrowd", 0)),
                extra_gt=_extra_gt(ann, loc),
            )
        )
    if n_bad_box:
        log.warning(
            "%s: skipped %d of %d annotations with zero/negative-size boxes (invalid_boxes='skip') in %s",
            dataset, n_bad_box, len(anns), ann_file,
        )
    if check_images:
        check_images_exist({inst.image_path for inst in instances}, ann_file, img_dir)
    if return_images:
        return instances, {i: v[0] for i, v in images.items()}
    return instances

