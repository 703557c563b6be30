"""COCO-style keypoint JSON -> :class:`~multipose.data.records.Instance`.

Covers every dataset distributed in (or converted to) the COCO keypoint format: COCO person keypoints,
AIC (COCO-style conversion), AP-10K, APT-36K, CrowdPose, OCHuman, Halpe (plain ``keypoints`` of
length ``3K``) and COCO-WholeBody (``layout="coco_wholebody"``: body ``keypoints`` 17 + ``foot_kpts`` 6
+ ``face_kpts`` 68 + ``lefthand_kpts`` 21 + ``righthand_kpts`` 21, assembled in that order = the
official 133-keypoint order).

Conventions:

* Keypoints stay in image pixels as stored (COCO coordinates, no shift); ``v`` as stored (COCO-WholeBody
  face and hand points carry fractional confidences, kept: everything downstream tests ``v > 0``).
* ``bbox`` is the annotation ``bbox`` (xywh) clipped by :func:`~._common.clip_box` when the image entry has
  ``width``/``height`` (as mmpose does).
* ``area`` is the annotation ``area`` when present and positive (COCO's segmentation area, which the
  COCO keypoint evaluation uses), else the box area.
* Every annotation becomes a record, crowd included (evaluation needs all of them); records that are
  not top-down samples are flagged (``iscrowd``, or ``Instance.unusable``) by mmpose 0.x's rules
  (``TopDownCocoDataset`` and its subclasses), so that :func:`multipose.data.formats.sample_instances`
  keeps exactly the instances mmpose trains and validates on. For a non-crowd annotation, in order:

  1. ``invalid_box``: no area inside the image after clipping (or zero / negative size) - an error
     unless ``invalid_boxes="skip"`` (the data config key ``data.invalid_boxes``);
  2. ``area_0``: the file gives ``area`` and it is 0 (same policy as 1.);
  3. ``unlabelled``: every value of ``keypoints`` is 0 (COCO-WholeBody: of the 17 body keypoints);
  4. ``num_keypoints_0``: the file gives ``num_keypoints`` and it is 0, even when some keypoints have
     ``v > 0`` (CrowdPose counts only its 12 limb joints there; not checked for COCO-WholeBody, as in
     mmpose).

  Rule 1 uses :func:`~._common.clip_box`, so boxes of at most 1 pixel agree with mmpose 0.24 exactly
  when ``clip_box`` follows its ``x1 + (w - 1)`` corner. mmpose's hand datasets (OneHand10K) apply only
  rule 3; real hand files have valid boxes and no ``num_keypoints: 0`` with labels, so the counts agree.

* ``Instance.extra`` keeps ``num_keypoints`` (when present), the image's ``crowdIndex`` (CrowdPose) and
  the file's own ``bbox`` when clipping changed it (evaluation scores against the file's box);
  image entries become :class:`~multipose.data.records.ImageRecord` (``read_coco(...,
  return_images="records")``), images without annotations included.
* Optional per-annotation ``gt_all`` ``{skeleton_name: flat [K*3] list}`` (written by the synthetic
  world) becomes ``Instance.extra_gt[skeleton_name]`` as ``[K, 3]`` arrays.
* No category filtering: every annotation in the file is read (AP-10K and APT-36K number their species),
  as in mmpose.
* The original ``ochuman.json`` (boxes as corners, annotations nested in the images) is refused with a
  pointer to the COCO-format files that mmpose evaluates on (OCHumanApi ``toCocoFormart``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ...skeletons import Skeleton, SkeletonError, get_skeleton
from ..records import DatasetFormatError, ImageRecord, Instance
from ._common import (
    as_box,
    as_float,
    as_float_array,
    as_int,
    box_is_valid,
    check_images_exist,
    check_policy,
    clip_box,
    finish_read,
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


#: Image-entry fields kept in ``ImageRecord.extra`` / ``Instance.extra`` (CrowdPose's crowding index).
IMAGE_EXTRA_FIELDS = ("crowdIndex",)


def _parse_images(data: dict, ann_file: Path, img_dir: str | Path) -> dict[int, ImageRecord]:
    images = require(data, "images", str(ann_file), "a COCO file lists its images under 'images'")
    if not isinstance(images, list):
        raise DatasetFormatError(f"{ann_file}: field 'images' must be a list, got {type(images).__name__}")
    out: dict[int, ImageRecord] = {}
    for i, img in enumerate(images):
        loc = f"{ann_file}: images[{i}]"
        img_id = as_int(require(img, "id", loc), loc, "id")
        file_name = require(img, "file_name", loc)
        if not isinstance(file_name, str) or not file_name:
            raise DatasetFormatError(f"{loc} (id={img_id}): field 'file_name' must be a non-empty string")
        if img_id in out:
            raise DatasetFormatError(
                f"{loc}: duplicate image id {img_id} (file '{file_name}' and '{out[img_id].path}'); "
                "image ids must be unique"
            )
        width = img.get("width")
        height = img.get("height")
        extra = {}
        for key in IMAGE_EXTRA_FIELDS:
            if key in img:
                extra[key] = as_float(img[key], f"{loc} (id={img_id})", key)
        out[img_id] = ImageRecord(
            image_id=img_id,
            path=os.path.join(str(img_dir), file_name),
            width=float(width) if isinstance(width, (int, float)) else 0.0,
            height=float(height) if isinstance(height, (int, float)) else 0.0,
            extra=extra,
        )
    return out


def _refuse_other_layouts(data: object, ann_file: Path) -> dict:
    """The JSON object of a COCO-style file; known non-COCO layouts get a message saying what to use."""
    if isinstance(data, dict) and "annotations" not in data and "keypoint_names" in data:
        raise DatasetFormatError(
            f"{ann_file}: this is the original OCHuman file (annotations nested in 'images', boxes as corners); "
            "use the COCO-format files that mmpose evaluates on (ochuman_coco_format_{val,test}_range_0.00_1.00.json, "
            "written by OCHumanApi's toCocoFormart) with format 'coco' and skeleton 'ochuman'"
        )
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{ann_file}: expected a JSON object with 'images' and 'annotations', got {type(data).__name__}"
            + (
                "; a JSON list is a detection-results or MPII file - use det_file or format 'mpii'"
                if isinstance(data, list)
                else ""
            )
        )
    return data


def read_coco_images(ann_file: str | Path, img_dir: str | Path, check_images: bool = False) -> dict[int, str]:
    """Map ``image_id -> image path`` from the ``images`` list of a COCO-style file.

    Works for image-only files (e.g. COCO test-dev ``image_info``) too; use it with
    :func:`~multipose.data.formats.read_detections`.
    """
    ann_file = Path(ann_file)
    data = load_json(ann_file, "COCO-style annotation")
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{ann_file}: expected a JSON object with 'images', got {type(data).__name__}"
        )
    index = {k: v.path for k, v in _parse_images(data, ann_file, img_dir).items()}
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
                "file was annotated with (and its format to coco_wholebody for COCO-WholeBody files)"
            )
        return flat.reshape(k, 3)
    parts = []
    for field, n in WHOLEBODY_PARTS:
        raw = require(
            ann,
            field,
            loc,
            "COCO-WholeBody annotations carry keypoints, foot_kpts, face_kpts, lefthand_kpts and "
            "righthand_kpts; use format coco for files with one plain 'keypoints' list",
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
            raise DatasetFormatError(
                f"{loc}: field 'gt_all.{name}' has {flat.size} values, not a multiple of 3"
            )
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


def _as_crowd(value: object, loc: object) -> bool:
    if value in (0, 1) or isinstance(value, bool):  # 0 / 1 / false / true (1.0 == 1 too)
        return bool(value)
    raise DatasetFormatError(f"{loc}: field 'iscrowd' must be 0 or 1, got {value!r:.40}")


def read_coco(
    ann_file: str | Path,
    img_dir: str | Path,
    skeleton: str | Skeleton,
    dataset: str,
    layout: str = "coco",
    check_images: bool = True,
    return_images: bool | str = False,
    invalid_boxes: str = "error",
    log: logging.Logger | None = None,
) -> list[Instance] | tuple[list[Instance], dict[int, str]] | tuple[list[Instance], dict[int, ImageRecord]]:
    """Read a COCO-style keypoint file into records (crowd and unusable annotations kept, flagged).

    Args:
        ann_file: the JSON file (``images``, ``annotations``; ``categories`` is not needed).
        img_dir: directory that ``images[].file_name`` is relative to.
        skeleton: skeleton name (or :class:`Skeleton`) the file is annotated with.
        dataset: dataset name from the mix config, stored in every instance.
        layout: ``"coco"`` (one ``keypoints`` list of ``3K`` values) or ``"coco_wholebody"``.
        check_images: raise if an annotated image file does not exist.
        return_images: ``True``: also return ``{image_id: image path}`` for every image entry (for
            detections); ``"records"``: ``{image_id: ImageRecord}`` (sizes and ``crowdIndex`` too).
        invalid_boxes: a non-crowd annotation whose box has no area inside the image, or whose ``area``
            is 0: ``"error"`` raises, ``"skip"`` keeps it as a ground-truth record flagged ``unusable``
            (never a sample; the count is logged).
        log: logger for skip counts (default ``multipose.data.formats``).
    """
    log = log or logger
    check_policy(invalid_boxes)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if return_images not in (False, True, "records"):
        raise ValueError(f"return_images must be False, True or 'records', got {return_images!r}")
    skel = get_skeleton(skeleton)
    k = skel.num_keypoints
    ann_file = Path(ann_file)
    if layout == "coco_wholebody" and k != 133:
        raise DatasetFormatError(
            f"{ann_file}: format coco_wholebody assembles 133 keypoints but skeleton '{skel.name}' has {k}; "
            "use skeleton 'coco_wholebody'"
        )

    data = _refuse_other_layouts(load_json(ann_file, "COCO-style annotation"), ann_file)
    images = _parse_images(data, ann_file, img_dir)
    anns = require(
        data, "annotations", str(ann_file), "a COCO keypoint file lists instances under 'annotations'"
    )
    if not isinstance(anns, list):
        raise DatasetFormatError(f"{ann_file}: field 'annotations' must be a list, got {type(anns).__name__}")
    if not anns:
        raise DatasetFormatError(
            f"{ann_file}: the annotation list is empty; point the dataset at a file with keypoint annotations "
            "(for image-only files use read_coco_images + read_detections)"
        )

    instances: list[Instance] = []
    flagged: dict[str, int] = {}
    seen_ids: set[int] = set()
    for idx, ann in enumerate(anns):
        loc0 = where(ann_file, index=idx)
        ann_id = as_int(require(ann, "id", loc0), loc0, "id")
        loc = where(ann_file, ann_id, idx)
        if ann_id in seen_ids:
            raise DatasetFormatError(
                f"{loc}: duplicate annotation id {ann_id}; annotation ids must be unique"
            )
        seen_ids.add(ann_id)
        image_id = as_int(require(ann, "image_id", loc), loc, "image_id")
        if image_id not in images:
            raise DatasetFormatError(
                f"{loc}: image_id {image_id} has no entry in 'images'; the file is inconsistent - "
                "re-export it or remove the annotation"
            )
        image = images[image_id]
        iscrowd = _as_crowd(ann.get("iscrowd", 0), loc)
        box = as_box(require(ann, "bbox", loc), loc)
        clipped = clip_box(box, image.width, image.height)
        kps = _keypoints(ann, loc, layout, k, skel.name)
        area_raw = ann.get("area")
        if area_raw is not None:
            area_raw = as_float(area_raw, loc, "area")
        extra: dict = dict(image.extra)
        if "num_keypoints" in ann:
            extra["num_keypoints"] = as_int(ann["num_keypoints"], loc, "num_keypoints")
        if max(abs(a - b) for a, b in zip(clipped, box)) > 1e-3:
            # the file's box: what COCO-style evaluation (use_area=False, ignore regions) uses
            extra["bbox"] = list(box)

        unusable = None
        if not iscrowd:
            if not box_is_valid(box) or not box_is_valid(clipped):
                unusable = "invalid_box"
            elif isinstance(area_raw, float) and area_raw <= 0:
                unusable = "area_0"
            elif (kps[:17] if layout == "coco_wholebody" else kps).max() == 0:  # mmpose: max(keypoints) == 0
                unusable = "unlabelled"
            elif layout == "coco" and extra.get("num_keypoints") == 0:
                unusable = "num_keypoints_0"
            if unusable in ("invalid_box", "area_0") and invalid_boxes == "error":
                reason = (
                    f"'area' {area_raw:g}"
                    if unusable == "area_0"
                    else f"bbox {list(box)} has zero or negative width/height"
                    if not box_is_valid(box)
                    else f"bbox {list(box)} has no area inside the image ({image.width:g}x{image.height:g})"
                )
                raise DatasetFormatError(
                    f"{loc}: {reason}; fix the annotation, or set data.invalid_boxes=skip to keep such "
                    "annotations as ground truth only, never as samples (mmpose drops them; the count is logged)"
                )
            if unusable is not None:
                flagged[unusable] = flagged.get(unusable, 0) + 1
        area = area_raw if isinstance(area_raw, float) and area_raw > 0 else box[2] * box[3]
        instances.append(
            Instance(
                image_path=image.path,
                image_id=image_id,
                ann_id=ann_id,
                dataset=dataset,
                bbox=np.array(clipped, dtype=np.float32),
                keypoints=kps,
                area=area,
                iscrowd=iscrowd,
                extra_gt=_extra_gt(ann, loc),
                unusable=unusable,
                extra=extra,
            )
        )
    bad_boxes = flagged.get("invalid_box", 0) + flagged.get("area_0", 0)
    if bad_boxes:
        log.warning(
            "%s: %d of %d annotations have a box without area in the image or 'area' 0 (data.invalid_boxes=skip: "
            "ground truth only, not samples) in %s",
            dataset,
            bad_boxes,
            len(anns),
            ann_file,
        )
    return finish_read(
        instances, images, ann_file, img_dir, check_images=check_images, return_images=return_images
    )
