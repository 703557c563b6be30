"""The one record type every annotation reader produces.

Conventions (see docs/architecture.md): boxes are ``xywh`` in image pixels; keypoints are float32
``[K, 3]`` arrays ``(x, y, v)`` in image pixels with COCO visibility (0 unlabelled, 1 labelled but
occluded, 2 visible); ``center``/``scale`` are pixels (``scale`` = padded box size ``[w, h]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DatasetFormatError", "Instance"]


class DatasetFormatError(ValueError):
    """An annotation/detection file does not match its format.

    The message names the file, the annotation (id and list position) and what to do about it.
    """


@dataclass
class Instance:
    """One person (or animal/hand) instance in one image.

    Arrays are converted to float32 on construction: ``bbox`` ``[4]`` xywh, ``keypoints`` ``[K, 3]``,
    ``center``/``scale`` ``[2]`` when given, every ``extra_gt`` value ``[K_s, 3]``.
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
