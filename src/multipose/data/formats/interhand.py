"""InterHand2.6M -> one :class:`~multipose.data.records.Instance` per hand, 2D joints projected from 3D.

An InterHand2.6M split is three files (``InterHand2.6M_<split>_{data,camera,joint_3d}.json``):

* ``*_data.json`` (COCO-style): ``images`` with ``id``, ``file_name``, ``width``, ``height``, ``capture``,
  ``camera``, ``frame_idx``; ``annotations`` with ``id``, ``image_id``, ``joint_valid`` (42 flags: right
  hand joints 0-20, then left hand 21-41), ``bbox``, ``hand_type``.
* ``*_camera.json``: ``{capture: {campos|camrot|focal|princpt: {camera: value}}}`` - camera position
  (mm, world), rotation (3x3), focal length and principal point (pixels).
* ``*_joint_3d.json``: ``{capture: {frame_idx: {world_coord: [42][3] (mm), ...}}}``.

Conversion (what mmpose 0.x ``InterHand2DDataset`` does, after the dataset's own tools):

1. world -> camera: ``X_cam = R (X_world - campos)``; camera -> pixels:
   ``u = X / (Z + 1e-8) * focal_x + princpt_x``, ``v = Y / (Z + 1e-8) * focal_y + princpt_y``.
2. For each hand, every joint flag is multiplied by the flag of its wrist (joint 20 of the hand): a
   hand without a valid root has no valid joint.
3. A hand with more than 11 valid joints becomes an instance (others are dropped, the count is
   logged): keypoints ``(u, v, 2)`` where valid and ``(u, v, 0)`` elsewhere, in the InterHand joint
   order (skeleton ``interhand``); ``bbox`` is the tightest box around the valid joints, started from
   ``[width, height, 0, 0]`` as mmpose does (the annotation's own ``bbox`` is not used).
4. ``ann_id = 2 * annotation id + hand`` (hand 0 right, 1 left), so both hands of an image have
   distinct ids; ``extra["hand"]`` is ``"right"`` or ``"left"``.

The camera and joint files default to the names next to ``ann_file`` (``*_data.json`` ->
``*_camera.json`` and ``*_joint_3d.json``); data entries can name them (``camera_file``, ``joint_file``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from ..records import DatasetFormatError, ImageRecord, Instance
from ._common import as_float_array, as_int, finish_read, load_json, logger, require, where
from .coco import _parse_images

__all__ = ["HAND_JOINTS", "MIN_VALID_JOINTS", "companion_files", "project_world_to_pixels", "read_interhand"]

HAND_JOINTS = 21
#: A hand is an instance when it has MORE than this many valid joints (mmpose ``np.sum(valid) > 11``).
MIN_VALID_JOINTS = 11
HANDS = ("right", "left")


def companion_files(ann_file: str | Path) -> tuple[Path, Path]:
    """``(camera_file, joint_file)`` next to an ``InterHand2.6M_<split>_data.json`` file."""
    ann_file = Path(ann_file)
    stem = ann_file.name
    if not stem.endswith("_data.json"):
        raise DatasetFormatError(
            f"{ann_file}: cannot derive the camera and joint files from this name (expected "
            "'<prefix>_data.json'); give camera_file and joint_file in the dataset's split config"
        )
    prefix = stem[: -len("_data.json")]
    return ann_file.with_name(f"{prefix}_camera.json"), ann_file.with_name(f"{prefix}_joint_3d.json")


def project_world_to_pixels(
    world: np.ndarray, campos: np.ndarray, camrot: np.ndarray, focal: np.ndarray, princpt: np.ndarray
) -> np.ndarray:
    """``[N, 3]`` world points (mm) -> ``[N, 2]`` pixels with InterHand2.6M's pinhole model."""
    world = np.asarray(world, dtype=np.float32).reshape(-1, 3)
    cam = (
        np.asarray(camrot, np.float32).reshape(3, 3)
        @ (world - np.asarray(campos, np.float32).reshape(1, 3)).T
    ).T
    focal = np.asarray(focal, np.float32).reshape(2)
    princpt = np.asarray(princpt, np.float32).reshape(2)
    u = cam[:, 0] / (cam[:, 2] + 1e-8) * focal[0] + princpt[0]
    v = cam[:, 1] / (cam[:, 2] + 1e-8) * focal[1] + princpt[1]
    return np.stack([u, v], axis=1)


def _lookup(tree: Any, keys: tuple[str, ...], file: Path, what: str) -> Any:
    node = tree
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            path = "".join(f"[{k!r}]" for k in keys[: depth + 1])
            raise DatasetFormatError(
                f"{file}: no entry {path} ({what}); the data, camera and joint files must come from the same "
                "InterHand2.6M release and split"
            )
        node = node[key]
    return node


def _camera(cameras: Any, capture: str, camera: str, file: Path) -> tuple[np.ndarray, ...]:
    out = []
    for field, size in (("campos", 3), ("camrot", 9), ("focal", 2), ("princpt", 2)):
        value = _lookup(cameras, (capture, field, camera), file, f"camera {field}")
        out.append(as_float_array(value, where(file, f"capture {capture} camera {camera}"), field, size))
    return tuple(out)


def _tight_box(xy: np.ndarray, valid: np.ndarray, width: float, height: float) -> np.ndarray:
    x1, y1, x2, y2 = width, height, 0.0, 0.0
    for (x, y), ok in zip(xy, valid):
        if ok:
            x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def read_interhand(
    ann_file: str | Path,
    img_dir: str | Path,
    skeleton: str | Skeleton = "interhand",
    dataset: str = "interhand",
    camera_file: str | Path | None = None,
    joint_file: str | Path | None = None,
    check_images: bool = True,
    return_images: bool | str = False,
    log: logging.Logger | None = None,
) -> list[Instance] | tuple[list[Instance], dict]:
    """Read one InterHand2.6M split (see the module docstring).

    ``return_images``: ``True`` also returns ``{image_id: path}``, ``"records"`` ``{image_id: ImageRecord}``.
    """
    log = log or logger
    skel = get_skeleton(skeleton)
    if skel.num_keypoints != HAND_JOINTS:
        raise DatasetFormatError(
            f"{ann_file}: InterHand2.6M has {HAND_JOINTS} joints per hand but skeleton '{skel.name}' has "
            f"{skel.num_keypoints}; use skeleton 'interhand'"
        )
    ann_file = Path(ann_file)
    derived = companion_files(ann_file) if camera_file is None or joint_file is None else (None, None)
    camera_file = Path(camera_file) if camera_file is not None else derived[0]
    joint_file = Path(joint_file) if joint_file is not None else derived[1]
    data = load_json(ann_file, "InterHand2.6M data")
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{ann_file}: expected a JSON object with 'images' and 'annotations'")
    cameras = load_json(camera_file, "InterHand2.6M camera")
    joints = load_json(joint_file, "InterHand2.6M 3D joint")
    images: dict[int, ImageRecord] = _parse_images(data, ann_file, img_dir)
    raw_images = {int(img["id"]): img for img in data["images"]}  # ids checked by _parse_images
    anns = require(data, "annotations", str(ann_file))
    if not isinstance(anns, list) or not anns:
        raise DatasetFormatError(f"{ann_file}: field 'annotations' must be a non-empty list")

    instances: list[Instance] = []
    n_hands_dropped = 0
    for idx, ann in enumerate(anns):
        loc0 = where(ann_file, index=idx)
        ann_id = as_int(require(ann, "id", loc0), loc0, "id")
        loc = where(ann_file, ann_id, idx)
        image_id = as_int(require(ann, "image_id", loc), loc, "image_id")
        if image_id not in images:
            raise DatasetFormatError(f"{loc}: image_id {image_id} has no entry in 'images'")
        image, raw = images[image_id], raw_images[image_id]
        iloc = f"{ann_file}: image id={image_id}"
        capture = str(as_int(require(raw, "capture", iloc), iloc, "capture"))
        camera = str(require(raw, "camera", iloc))
        frame = str(as_int(require(raw, "frame_idx", iloc), iloc, "frame_idx"))
        campos, camrot, focal, princpt = _camera(cameras, capture, camera, camera_file)
        world = _lookup(joints, (capture, frame, "world_coord"), joint_file, "3D joints of the frame")
        world = as_float_array(
            world, where(joint_file, f"capture {capture} frame {frame}"), "world_coord", 3 * 2 * HAND_JOINTS
        )
        xy = project_world_to_pixels(world, campos, camrot, focal, princpt).reshape(2, HAND_JOINTS, 2)
        valid = as_float_array(require(ann, "joint_valid", loc), loc, "joint_valid", 2 * HAND_JOINTS)
        valid = valid.reshape(2, HAND_JOINTS)
        for hand in range(2):
            ok = valid[hand] * valid[hand, -1] > 0  # no valid root: no valid joint
            if int(ok.sum()) <= MIN_VALID_JOINTS:
                n_hands_dropped += 1
                continue
            kps = np.zeros((HAND_JOINTS, 3), dtype=np.float32)
            kps[:, :2] = xy[hand]
            kps[:, 2] = np.where(ok, 2.0, 0.0)
            box = _tight_box(xy[hand], ok, image.width, image.height)
            instances.append(
                Instance(
                    image_path=image.path,
                    image_id=image_id,
                    ann_id=2 * ann_id + hand,
                    dataset=dataset,
                    bbox=box,
                    keypoints=kps,
                    area=float(box[2] * box[3]),
                    extra={"hand": HANDS[hand]},
                )
            )
    log.info(
        "%s: %d hands from %d annotations in %s (%d hands with %d or fewer valid joints dropped, as mmpose)",
        dataset,
        len(instances),
        len(anns),
        ann_file,
        n_hands_dropped,
        MIN_VALID_JOINTS,
    )
    return finish_read(
        instances, images, ann_file, img_dir, check_images=check_images, return_images=return_images
    )
