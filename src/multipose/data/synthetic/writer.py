"""Genuine dataset file layouts for the synthetic world.

* COCO keypoints (``syn_coco``, ``syn_aic``, ``syn_ap10k``): ``{"images", "annotations", "categories"}``
  with flat ``keypoints`` ``[x1, y1, v1, ...]`` in image pixels, ``num_keypoints`` (labelled, ``v > 0``),
  ``bbox`` ``[x, y, w, h]`` (tight box of the figure's visible pixels), ``area`` (visible pixel count, like
  COCO's segmentation area), ``iscrowd: 0``, and ``categories[*].keypoints`` / ``skeleton`` (1-based links).
* COCO-WholeBody (``syn_wholebody``): the same plus the separate part fields of the real release,
  ``foot_kpts`` (6), ``face_kpts`` (68), ``lefthand_kpts`` (21), ``righthand_kpts`` (21), the boxes
  ``face_box`` / ``lefthand_box`` / ``righthand_box`` (xywh) and ``*_valid`` flags; a part that was not
  labelled is all zeros with ``*_valid: false``. ``keypoints`` holds the 17 body points and
  ``num_keypoints`` counts those, as in the real file.
* MPII in mmpose's JSON form (``syn_mpii``): a list of ``{image, joints [16, 2], joints_vis [16], center [2],
  scale, headbox [x1, y1, x2, y2]}`` in 1-based MPII pixel coordinates (joints, centre, head box) with ``scale`` = person height / 200 px (mmpose convention; readers
  apply their own padding) and ``joints_vis`` 1 for labelled joints (occluded ones included, as in MPII);
  unlabelled joints (outside the image) are ``[-1, -1]`` with ``joints_vis`` 0.

Every annotation / entry also carries ``gt_all``: ``{skeleton: flat [K*3]}`` — the complete hidden ground
truth of every skeleton that applies to the figure (0-based image pixels in every format, COCO visibility
convention, no part-validity masking),
so cross-skeleton accuracy can be measured exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "categories_for",
    "coco_annotation",
    "wholebody_parts",
    "mpii_entry",
    "dump_json",
    "flat",
    "tight_box",
]

WHOLEBODY_PARTS = (
    ("keypoints", 0, 17),
    ("foot_kpts", 17, 23),
    ("face_kpts", 23, 91),
    ("lefthand_kpts", 91, 112),
    ("righthand_kpts", 112, 133),
)


def flat(kpts: np.ndarray) -> list[float]:
    """``[K, 3]`` -> flat list with coordinates rounded to 0.01 px and integer visibilities."""
    k = np.asarray(kpts, dtype=np.float64).reshape(-1, 3)
    xy = np.round(k[:, :2], 2).tolist()
    out: list[float] = []
    for (x, y), v in zip(xy, k[:, 2].astype(np.int64).tolist()):
        out += (x, y, v) if v else (0, 0, 0)
    return out


def tight_box(kpts: np.ndarray) -> list[float]:
    """xywh box of the labelled (``v > 0``) keypoints; zeros when none."""
    k = np.asarray(kpts).reshape(-1, 3)
    k = k[k[:, 2] > 0]
    if len(k) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = k[:, :2].min(0)
    x1, y1 = k[:, :2].max(0)
    return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]


def categories_for(skeleton: str, species: tuple[str, ...] = ("person",)) -> list[dict[str, Any]]:
    """COCO ``categories`` for a skeleton: keypoint names and 1-based links from the registry.

    COCO-WholeBody's real file lists only the 17 body keypoints in its category; that is kept here.
    """
    from multipose.skeletons import get_skeleton

    sk = get_skeleton("coco" if skeleton == "coco_wholebody" else skeleton)
    links = [[int(a) + 1, int(b) + 1] for a, b in sk.links]
    sup = "person" if species == ("person",) else "animal"
    return [
        {"id": i + 1, "name": name, "supercategory": sup, "keypoints": list(sk.keypoints), "skeleton": links}
        for i, name in enumerate(species)
    ]


def coco_annotation(
    ann_id: int,
    image_id: int,
    category_id: int,
    kpts: np.ndarray,
    bbox: list[float],
    area: int,
    gt_all: dict[str, np.ndarray],
) -> dict[str, Any]:
    """One COCO keypoint annotation (see the module docstring)."""
    k = np.asarray(kpts).reshape(-1, 3)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "keypoints": flat(k),
        "num_keypoints": int((k[:, 2] > 0).sum()),
        "bbox": bbox,
        "area": int(area),
        "iscrowd": 0,
        "gt_all": {name: flat(v) for name, v in gt_all.items()},
    }


def wholebody_parts(kpts133: np.ndarray, valid: dict[str, bool]) -> dict[str, Any]:
    """Split 133 whole-body keypoints into the release's part fields; invalid parts become zeros.

    ``valid`` maps ``"foot" | "face" | "lefthand" | "righthand"`` to whether that part is labelled.
    """
    k = np.asarray(kpts133, dtype=np.float32).reshape(133, 3)
    out: dict[str, Any] = {}
    for field, a, b in WHOLEBODY_PARTS:
        part = k[a:b].copy()
        key = field.split("_")[0] if field != "keypoints" else None
        if key is not None and not valid[key]:
            part[:] = 0.0
        out[field] = flat(part)
        if key is not None:
            out[f"{key}_valid"] = bool(valid[key])
            if key != "foot":
                out[f"{key}_box"] = tight_box(part)
    return out


def mpii_entry(
    image: str,
    kpts16: np.ndarray,
    height_px: float,
    centre: np.ndarray,
    headbox: list[float],
    gt_all: dict[str, np.ndarray],
) -> dict[str, Any]:
    """One MPII entry in mmpose's JSON layout (see the module docstring)."""
    k = np.asarray(kpts16, dtype=np.float64).reshape(16, 3)
    # MPII (MATLAB) coordinates are 1-based: readers subtract 1 (mmpose's TopDownMpiiDataset does)
    joints = [
        [round(float(x) + 1.0, 2), round(float(y) + 1.0, 2)] if v > 0 else [-1.0, -1.0] for x, y, v in k
    ]
    return {
        "image": image,
        "joints": joints,
        "joints_vis": [1 if v > 0 else 0 for v in k[:, 2]],
        "center": [round(float(centre[0]) + 1.0, 2), round(float(centre[1]) + 1.0, 2)],
        "scale": round(float(height_px) / 200.0, 4),
        "headbox": [round(float(v), 2) for v in headbox],
        "gt_all": {name: flat(v) for name, v in gt_all.items()},
    }


def dump_json(obj: Any, path: Path) -> None:
    """Write compact, deterministic JSON (fixed key order as built, no whitespace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"), ensure_ascii=True)
