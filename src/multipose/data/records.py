"""The one record type every annotation reader produces.

Conventions (see docs/architecture.md): boxes are ``xywh`` in image pixels; keypoints are float32
``[K, 3]`` arrays ``(x, y, v)`` in image pixels with COCO visibility (0 unlabelled, 1 labelled but
occluded, 2 visible); ``center``/``scale`` are pixels (``scale`` = padded box size ``[w, h]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DatasetFormatError", "ImageRecord", "Instance", "image_records"]


class DatasetFormatError(ValueError):
    """An annotation/detection file does not match its format.

    The message names the file, the annotation (id and list position) and what to do about it.
    """


@dataclass
class Instance:
    """One person (or animal/hand) instance in one image.

    Arrays are converted to float32 on construction: ``bbox`` ``[4]`` xywh, ``keypoints`` ``[K, 3]``,
    ``center``/``scale`` ``[2]`` when given, every ``extra_gt`` value ``[K_s, 3]``.

    ``unusable`` says why a record is ground truth only and not a top-down sample, by the rules of the
    format's reference tools (mmpose 0.x): ``"invalid_box"``, ``"area_0"`` (the file's ``area`` is 0),
    ``"unlabelled"`` (every keypoint value is 0), ``"num_keypoints_0"`` (the file's ``num_keypoints`` is
    0), ``"too_few_valid"`` (InterHand2.6M: 11 or fewer valid joints); ``None`` for a usable record.
    Crowd records are flagged by ``iscrowd`` alone.

    ``extra`` keeps file fields that evaluators need, verbatim under their file names: ``num_keypoints``
    (when the annotation has it; CrowdPose's counts only its 12 limb joints and decides which ground
    truths are ignored), ``crowdIndex`` (CrowdPose, from the image entry: the easy / medium / hard
    split) and ``bbox`` (the file's box ``[x, y, w, h]`` when clipping changed it: COCO-style evaluation
    uses the file's box, e.g. AIC / CrowdPose ``use_area=False``; read ``inst.extra.get("bbox", inst.bbox)``).
    InterHand2.6M records carry ``hand`` (``"right"`` / ``"left"``). Readers add nothing else, so the
    dict stays small on large files.
    """

    image_path: str
    image_id: int
    ann_id: int  # -1 for detections
    dataset: str
    bbox: np.ndarray
    keypoints: np.ndarray
    area: float
    score: float = 1.0
    iscrowd: bool = False
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    head_size: float | None = None
    head_size_source: str | None = None  # PCKh normaliser: "head_box" (official) or "neck_head" (fallback)
    extra_gt: dict[str, np.ndarray] = field(default_factory=dict)
    unusable: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)
        kps = np.asarray(self.keypoints, dtype=np.float32)
        if kps.ndim != 2 or kps.shape[1] != 3:
            raise ValueError(f"Instance.keypoints must have shape [K, 3], got {kps.shape}")
        self.keypoints = kps
        if self.center is not None:
            self.center = np.asarray(self.center, dtype=np.float32).reshape(2)
        if self.scale is not None:
            self.scale = np.asarray(self.scale, dtype=np.float32).reshape(2)
        self.area = float(self.area)
        self.score = float(self.score)
        self.iscrowd = bool(self.iscrowd)
        self.extra_gt = {k: np.asarray(v, dtype=np.float32).reshape(-1, 3) for k, v in self.extra_gt.items()}

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_labelled(self) -> int:
        """Number of keypoints with ``v > 0``."""
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass(frozen=True)
class ImageRecord:
    """One entry of an annotation file's image list (images without annotations included).

    ``width``/``height`` are 0 when the file does not give them; ``extra`` keeps image fields evaluators
    need, under their file names (CrowdPose ``crowdIndex``).
    """

    image_id: int
    path: str
    width: float = 0.0
    height: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)


def image_records(index: Mapping[int, str | ImageRecord]) -> dict[int, ImageRecord]:
    """``{image_id: ImageRecord}`` from a reader's image index (values: paths or records)."""
    return {
        int(i): v if isinstance(v, ImageRecord) else ImageRecord(image_id=int(i), path=str(v))
        for i, v in index.items()
    }
