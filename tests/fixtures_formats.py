"""Builders for format-exact annotation fixtures (tiny JPEGs + JSON) used by test_formats.py.

Every builder writes into a directory the test owns (``tmp_path``) and returns the paths; nothing is
read from outside the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def write_jpegs(img_dir: Path, names: list[str], size: tuple[int, int] = (48, 64)) -> list[Path]:
    """Write small JPEGs of ``size = (H, W)`` with distinct content; returns their paths."""
    img_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        img = np.full((size[0], size[1], 3), 40 * (i + 1) % 256, dtype=np.uint8)
        path = img_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def flat_keypoints(k: int, x0: float = 0.0, visible: list[int] | None = None) -> list[float]:
    """Flat COCO keypoint list: keypoint i at (x0 + i, 10 + i) with v = visible[i] (default 2)."""
    vis = visible if visible is not None else [2] * k
    out: list[float] = []
    for i in range(k):
        out += [x0 + i, 10.0 + i, vis[i]]
    return out


def coco_image(img_id: int, file_name: str, width: int = 64, height: int = 48) -> dict:
    return {"id": img_id, "file_name": file_name, "width": width, "height": height}


def coco_ann(ann_id: int, image_id: int, k: int, bbox=(5.0, 4.0, 30.0, 20.0), **extra) -> dict:
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": list(bbox),
        "keypoints": flat_keypoints(k),
        "num_keypoints": k,
        "iscrowd": 0,
    }
    ann.update(extra)
    return ann


def coco_file(
    tmp_path: Path, images: list[dict], anns: list[dict], name: str = "ann.json", make_images: bool = True
) -> tuple[Path, Path]:
    """A COCO-style keypoint file plus its image directory; returns ``(ann_file, img_dir)``."""
    img_dir = tmp_path / "images"
    if make_images:
        write_jpegs(img_dir, [img["file_name"] for img in images])
    else:
        img_dir.mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    return write_json(tmp_path / name, data), img_dir


WHOLEBODY_MARKERS = {
    "keypoints": 0,
    "foot_kpts": 100,
    "face_kpts": 200,
    "lefthand_kpts": 300,
    "righthand_kpts": 400,
}
WHOLEBODY_COUNTS = {
    "keypoints": 17,
    "foot_kpts": 6,
    "face_kpts": 68,
    "lefthand_kpts": 21,
    "righthand_kpts": 21,
}


def wholebody_ann(ann_id: int, image_id: int) -> dict:
    """COCO-WholeBody annotation with separate part fields; part p's keypoint i has x = marker(p) + i."""
    ann = coco_ann(ann_id, image_id, 17)
    for field, n in WHOLEBODY_COUNTS.items():
        ann[field] = flat_keypoints(n, x0=WHOLEBODY_MARKERS[field])
    ann.update(
        face_valid=True,
        lefthand_valid=True,
        righthand_valid=True,
        foot_valid=True,
        face_box=[0, 0, 1, 1],
        lefthand_box=[0, 0, 1, 1],
        righthand_box=[0, 0, 1, 1],
    )
    return ann


def mpii_entry(
    image: str,
    joints: list[list[float]],
    vis: list[int],
    center,
    scale: float,
    headbox: list[float] | None = None,
) -> dict:
    entry = {"image": image, "joints": joints, "joints_vis": vis, "center": list(center), "scale": scale}
    if headbox is not None:
        entry["headbox"] = headbox
    return entry
