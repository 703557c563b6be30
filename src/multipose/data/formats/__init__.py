"""Annotation readers: every supported file format -> ``list[Instance]``.

=====================  ==========================================================================
format name            reader
=====================  ==========================================================================
``coco``               :func:`read_coco` (COCO, AIC, AP-10K, APT-36K, CrowdPose, OCHuman, Halpe)
``coco_wholebody``     :func:`read_coco` with ``layout="coco_wholebody"`` (separate part fields)
``mpii``               :func:`read_mpii` (MPII common JSON list)
``interhand``          :func:`read_interhand` (InterHand2.6M: data + camera + 3D joint files, per hand)
detections             :func:`read_detections` (COCO results format, for detected-box validation)
=====================  ==========================================================================

All readers raise :class:`DatasetFormatError` (a ``ValueError``) naming the file, the annotation and
the fix. Readers return every annotation (crowd and unusable ones flagged); :func:`sample_instances`
keeps the top-down samples by the format's reference rules and logs the counts per reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..records import DatasetFormatError, ImageRecord, Instance
from .coco import WHOLEBODY_PARTS, read_coco, read_coco_images
from .detections import read_detections
from .filters import drop_reason, sample_instances, training_instances
from .interhand import read_interhand
from .mpii import MPII_HEAD_FACTOR, read_mpii

__all__ = [
    "MPII_HEAD_FACTOR",
    "READERS",
    "WHOLEBODY_PARTS",
    "DatasetFormatError",
    "ImageRecord",
    "Instance",
    "drop_reason",
    "get_reader",
    "read_coco",
    "read_coco_images",
    "read_detections",
    "read_interhand",
    "read_mpii",
    "sample_instances",
    "training_instances",
]

#: ``format`` name in a dataset config -> reader ``(ann_file, img_dir, skeleton, dataset, **kw)``.
READERS: dict[str, Callable[..., object]] = {
    "coco": read_coco,
    "coco_wholebody": functools.partial(read_coco, layout="coco_wholebody"),
    "mpii": read_mpii,
    "interhand": read_interhand,
}


def get_reader(format_name: str) -> Callable[..., object]:
    """Reader for a ``format`` name; unknown names raise a ValueError listing the known ones."""
    try:
        return READERS[format_name]
    except KeyError:
        raise ValueError(
            f"unknown annotation format '{format_name}'; known formats: {', '.join(sorted(READERS))}"
        ) from None
