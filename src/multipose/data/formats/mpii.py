"""MPII "common JSON" (the list format used by mmpose / Simple Baselines) -> Instances.

Each entry is ``{image, joints [K][2], joints_vis [K], center [2], scale, headbox?}`` where ``joints``
and ``center`` are 1-based MATLAB pixel coordinates and ``scale`` is the person height / 200.

Conversion (exactly what mmpose 0.x ``TopDownMpiiDataset``, used by ViTPose, does):

1. ``s = scale``; if ``center[0] != -1``: ``center[1] += 15 * s`` (move the centre down) and
   ``s *= 1.25`` (pad the box) - "to avoid cropping limbs".
2. ``center -= 1`` and ``joints -= 1`` (1-based -> 0-based pixels).
3. ``Instance.center = center`` and ``Instance.scale = [s * 200, s * 200]`` (square padded box in
   pixels; the crop transform fixes the aspect ratio to the network input).

An entry with ``center[0] == -1`` (centre unknown) gets ``center = scale = None`` so the transform
derives them from ``bbox``.

Other fields:

* ``keypoints[:, 2] = 2`` where ``joints_vis > 0`` (labelled; this JSON has no occlusion flag), else 0
  with ``x = y = 0``.
* ``bbox`` = tight box around the labelled joints (``area`` = its area). With fewer than two labelled
  joints, or a degenerate tight box, the un-padded square of side ``scale * 200`` around the
  (0-based, unshifted) centre is used instead.
* ``head_size`` (PCKh normaliser) = ``0.6 * ||(x2 - x1, y2 - y1)||`` for ``headbox = [x1, y1, x2, y2]``,
  the MPII ``SC_BIAS`` rule. Without ``headbox`` it falls back to the distance ``upper_neck``-``head_top``
  (the head segment that the 0.6 x box diagonal approximates), found by semantic tag, when both are
  labelled; otherwise ``None`` (the count is logged).
* ``image_id`` = 1-based rank of the image file name in sorted order (stable for a given file);
  ``ann_id`` = 1-based position of the entry in the list.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from ..records import DatasetFormatError, Instance
from ._common import as_float, as_float_array, check_images_exist, load_json, logger, require
from .coco import _extra_gt

__all__ = ["MPII_HEAD_FACTOR", "read_mpii"]

#: PCKh normaliser = MPII_HEAD_FACTOR * head-box diagonal (``SC_BIAS`` of the MPII evaluation code).
MPII_HEAD_FACTOR = 0.6


def _tight_box(xy: np.ndarray) -> np.ndarray | None:
    if len(xy) < 2:
        return None
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    if x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def read_mpii(
    ann_file: str | Path,
    img_dir: str | Path,
    skeleton: str | Skeleton = "mpii",
    dataset: str = "mpii",
    check_images: bool = True,
    return_images: bool = False,
    log: logging.Logger | None = None,
) -> list[Instance] | tuple[list[Instance], dict[int, str]]:
    """Read an MPII-style JSON list into instances (see the module docstring for the conversion).

    With ``return_images=True`` also returns ``{image_id: image_path}``.
    """
    log = log or logger
    skel = get_skeleton(skeleton)
    k = skel.num_keypoints
    ann_file = Path(ann_file)
    data = load_json(ann_file, "MPII-style annotation")
    if not isinstance(data, list):
        raise DatasetFormatError(
            f"{ann_file}: expected a JSON list of {{image, joints, joints_vis, center, scale}} entries, "
            f"got {type(data).__name__}"
        )
    if not data:
        raise DatasetFormatError(
            f"{ann_file}: the annotation list is empty; point the dataset at a file with entries"
        )

    def loc_of(i: int) -> str:
        return f"{ann_file}: annotation id={i + 1} (entry [{i}])"

    names = []
    for i, entry in enumerate(data):
        name = require(entry, "image", loc_of(i))
        if not isinstance(name, str) or not name:
            raise DatasetFormatError(f"{loc_of(i)}: field 'image' must be a non-empty file name")
        names.append(name)
    image_ids = {name: rank + 1 for rank, name in enumerate(sorted(set(names)))}

    neck = skel.find_semantic("upper_neck")
    top = skel.find_semantic("head_top")
    instances: list[Instance] = []
    n_head_fallback = n_head_missing = 0
    for i, entry in enumerate(data):
        loc = loc_of(i)
        joints = as_float_array(require(entry, "joints", loc), loc, "joints")
        if joints.size != 2 * k:
            raise DatasetFormatError(
                f"{loc}: field 'joints' has {joints.size // 2} points but skeleton '{skel.name}' has {k} keypoints; "
                "set the dataset's skeleton to the one the file was annotated with"
            )
        vis = as_float_array(require(entry, "joints_vis", loc), loc, "joints_vis")
        if vis.size != k:
            raise DatasetFormatError(f"{loc}: field 'joints_vis' has {vis.size} values, expected {k}")
        center_raw = as_float_array(require(entry, "center", loc), loc, "center", length=2)
        s0 = as_float(require(entry, "scale", loc), loc, "scale")
        if s0 <= 0:
            raise DatasetFormatError(
                f"{loc}: field 'scale' must be a positive number (person height / 200), got {s0}"
            )

        labelled = vis > 0
        kps = np.zeros((k, 3), dtype=np.float32)
        kps[labelled, :2] = joints.reshape(k, 2)[labelled] - 1.0
        kps[labelled, 2] = 2.0

        if center_raw[0] != -1:
            center = center_raw.copy()
            center[1] += 15.0 * s0
            center -= 1.0
            s = s0 * 1.25 * 200.0
            scale = np.array([s, s], dtype=np.float32)
        else:
            center = scale = None

        bbox = _tight_box(kps[labelled, :2])
        if bbox is None:
            if center_raw[0] == -1:
                raise DatasetFormatError(
                    f"{loc}: neither a centre (center[0] is -1) nor two labelled joints - no box can be derived; "
                    "remove the entry or add its centre/scale"
                )
            side = s0 * 200.0
            c0 = center_raw - 1.0
            bbox = np.array([c0[0] - side / 2, c0[1] - side / 2, side, side], dtype=np.float32)

        head_size = None
        if "headbox" in entry:
            hb = as_float_array(entry["headbox"], loc, "headbox", length=4)
            diag = float(np.hypot(hb[2] - hb[0], hb[3] - hb[1]))
            if diag <= 0:
                raise DatasetFormatError(
                    f"{loc}: field 'headbox' {hb.tolist()} has zero size; expected [x1, y1, x2, y2]"
                )
            head_size = MPII_HEAD_FACTOR * diag
        elif neck is not None and top is not None and labelled[neck] and labelled[top]:
            head_size = float(np.linalg.norm(kps[top, :2] - kps[neck, :2]))
            n_head_fallback += 1
        else:
            n_head_missing += 1

        instances.append(
            Instance(
                image_path=os.path.join(str(img_dir), names[i]),
                image_id=image_ids[names[i]],
                ann_id=i + 1,
                dataset=dataset,
                bbox=bbox,
                keypoints=kps,
                area=float(bbox[2] * bbox[3]),
                center=center,
                scale=scale,
                head_size=head_size,
                extra_gt=_extra_gt(entry, loc),
            )
        )
    if n_head_fallback:
        log.info(
            "%s: %d of %d entries have no 'headbox'; head_size = distance upper_neck-head_top for them",
            dataset,
            n_head_fallback,
            len(data),
        )
    if n_head_missing:
        log.warning(
            "%s: %d of %d entries have neither 'headbox' nor labelled upper_neck+head_top; head_size is None "
            "(PCKh cannot be computed for them)",
            dataset,
            n_head_missing,
            len(data),
        )
    if check_images:
        check_images_exist({inst.image_path for inst in instances}, ann_file, img_dir)
    if return_images:
        return instances, {iid: os.path.join(str(img_dir), name) for name, iid in image_ids.items()}
    return instances
