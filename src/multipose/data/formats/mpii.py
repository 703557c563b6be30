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
* ``head_size`` (PCKh normaliser) = ``0.6 * ||(x2 - x1, y2 - y1)||`` for the head box ``[x1, y1, x2, y2]``,
  the MPII ``SC_BIAS`` rule. The head boxes come from the official ``mpii_gt_val.mat`` when the data
  entry names it (``val.head_boxes``), else from an entry's ``headbox`` field. Without either, head_size
  falls back to the distance ``upper_neck``-``head_top`` (found by semantic tag, when both are labelled),
  with a warning, and ``head_size_source = "neck_head"`` so that the evaluator flags the numbers as not
  comparable with MPII results; otherwise ``None``.
* With ``head_boxes`` (the official evaluation file, read as mmpose's ``TopDownMpiiDataset.evaluate``
  does): its entries are the JSON entries in order (2958 for the val split). The ground truth of each
  entry becomes the file's: ``pos_gt_src`` (1-based MATLAB pixels, so minus 1) where ``jnt_missing`` is
  0, and ``head_size = 0.6 * ||headboxes_src[1] - headboxes_src[0]||``. mmpose adds 1 to the 0-based
  predictions instead; the distances are the same.
* ``image_id`` = 1-based rank of the image file name in sorted order (stable for a given file);
  ``ann_id`` = 1-based position of the entry in the list.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from ..records import DatasetFormatError, Instance
from ._common import as_float, as_float_array, check_images_exist, load_json, logger, require
from .coco import _extra_gt

__all__ = ["MPII_HEAD_FACTOR", "MpiiGroundTruth", "read_mpii", "read_mpii_gt_mat"]

#: PCKh normaliser = MPII_HEAD_FACTOR * head-box diagonal (``SC_BIAS`` of the MPII evaluation code).
MPII_HEAD_FACTOR = 0.6


@dataclass
class MpiiGroundTruth:
    """The official MPII evaluation ground truth (``mpii_gt_val.mat``), one row per annotation entry."""

    joint_names: list[str]  # the file's ``dataset_joints`` ('rank', 'rkne', ..., 'lwri')
    joints: np.ndarray  # [N, K, 2] float64, 0-based pixels (the file's 1-based pos_gt_src minus 1)
    visible: np.ndarray  # [N, K] bool, 1 - jnt_missing
    head_boxes: np.ndarray  # [N, 4] float64 (x1, y1, x2, y2), 1-based like the file

    @property
    def head_sizes(self) -> np.ndarray:
        """``[N]`` PCKh normalisers ``0.6 * head-box diagonal`` (MPII ``SC_BIAS``)."""
        return MPII_HEAD_FACTOR * np.hypot(
            self.head_boxes[:, 2] - self.head_boxes[:, 0], self.head_boxes[:, 3] - self.head_boxes[:, 1]
        )


def read_mpii_gt_mat(path: str | Path, num_keypoints: int = 16) -> MpiiGroundTruth:
    """Read the official ``mpii_gt_val.mat`` (``dataset_joints``, ``jnt_missing`` ``[K, N]``,
    ``pos_gt_src`` ``[K, 2, N]``, ``headboxes_src`` ``[2, 2, N]``) with scipy."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(
            f"{path}: MPII head-box file not found; val.head_boxes must name the official mpii_gt_val.mat "
            "(shipped with mmpose's MPII annotations)"
        )
    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises several types for a file that is not a MATLAB file
        raise DatasetFormatError(
            f"{path}: not a readable MATLAB .mat file ({type(err).__name__}: {err})"
        ) from None
    missing = [k for k in ("jnt_missing", "pos_gt_src", "headboxes_src") if k not in mat]
    if missing:
        raise DatasetFormatError(
            f"{path}: fields {missing} are missing; expected the official mpii_gt_val.mat with dataset_joints, "
            "jnt_missing, pos_gt_src and headboxes_src"
        )
    pos = np.asarray(mat["pos_gt_src"], dtype=np.float64)
    miss = np.asarray(mat["jnt_missing"])
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    if pos.ndim != 3 or pos.shape[:2] != (num_keypoints, 2):
        raise DatasetFormatError(
            f"{path}: pos_gt_src has shape {pos.shape}, expected ({num_keypoints}, 2, N)"
        )
    n = pos.shape[2]
    if miss.shape != (num_keypoints, n):
        raise DatasetFormatError(
            f"{path}: jnt_missing has shape {miss.shape}, expected ({num_keypoints}, {n})"
        )
    if boxes.shape != (2, 2, n):
        raise DatasetFormatError(f"{path}: headboxes_src has shape {boxes.shape}, expected (2, 2, {n})")
    names = [str(np.asarray(v).reshape(-1)[0]) for v in np.asarray(mat.get("dataset_joints", [])).reshape(-1)]
    return MpiiGroundTruth(
        joint_names=names,
        joints=pos.transpose(2, 0, 1) - 1.0,
        visible=miss.T == 0,
        head_boxes=np.concatenate([boxes[0].T, boxes[1].T], axis=1),
    )


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
    head_boxes: str | Path | None = None,
) -> list[Instance] | tuple[list[Instance], dict[int, str]]:
    """Read an MPII-style JSON list into instances (see the module docstring for the conversion).

    With ``return_images=True`` also returns ``{image_id: image_path}``. ``head_boxes``: the official
    ``mpii_gt_val.mat`` of this split (ground truth and head boxes for PCKh).
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

    official = read_mpii_gt_mat(head_boxes, k) if head_boxes is not None else None
    if official is not None and official.joints.shape[0] != len(data):
        raise DatasetFormatError(
            f"{head_boxes}: {official.joints.shape[0]} entries but {ann_file} has {len(data)}; the head-box file "
            "must be the official one of the same split (mpii_gt_val.mat goes with mpii_val.json)"
        )
    n_changed = 0
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
        if official is not None:
            ref = np.zeros((k, 3), dtype=np.float32)
            ref[official.visible[i], :2] = official.joints[i][official.visible[i]]
            ref[official.visible[i], 2] = 2.0
            if not np.allclose(ref, kps, atol=1e-3):
                n_changed += 1
            kps, labelled = ref, official.visible[i]

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

        head_size, head_source = None, None
        if official is not None:
            head_size, head_source = float(official.head_sizes[i]), "head_box"
            if not head_size > 0:
                log.warning("%s: head box of entry %d has zero size; PCKh skips the entry", head_boxes, i)
        elif "headbox" in entry:
            hb = as_float_array(entry["headbox"], loc, "headbox", length=4)
            diag = float(np.hypot(hb[2] - hb[0], hb[3] - hb[1]))
            if diag <= 0:
                raise DatasetFormatError(
                    f"{loc}: field 'headbox' {hb.tolist()} has zero size; expected [x1, y1, x2, y2]"
                )
            head_size, head_source = MPII_HEAD_FACTOR * diag, "head_box"
        elif neck is not None and top is not None and labelled[neck] and labelled[top]:
            head_size, head_source = float(np.linalg.norm(kps[top, :2] - kps[neck, :2])), "neck_head"
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
                head_size_source=head_source,
                extra_gt=_extra_gt(entry, loc),
            )
        )
    if n_changed:
        log.info(
            "%s: the ground truth of %d of %d entries differs from %s; the official %s is used",
            dataset,
            n_changed,
            len(data),
            ann_file.name,
            Path(head_boxes).name,
        )
    if n_head_fallback:
        log.warning(
            "%s: %d of %d entries have no 'headbox' and no val.head_boxes file names the official head boxes; "
            "head_size = distance upper_neck-head_top for them. PCKh is "
            "then NOT the official MPII number: name the official head boxes in the data entry "
            "(val.head_boxes: mpii/annotations/mpii_gt_val.mat)",
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
