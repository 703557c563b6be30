"""Instance filters applied after reading (counts are always logged; nothing is dropped silently).

Readers return every annotation as a record (evaluation needs crowd regions and unlabelled people too)
and flag the ones that are not top-down samples by the format's reference rules (``Instance.iscrowd``,
``Instance.unusable``, see :mod:`multipose.data.formats.coco`). mmpose 0.x trains and validates (with
ground-truth boxes) on the same set of samples, so one filter serves both splits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..records import Instance
from ._common import logger

__all__ = ["drop_reason", "sample_instances", "training_instances"]


def drop_reason(inst: Instance) -> str | None:
    """Why ``inst`` is not a top-down sample (``"crowd"``, a reader's ``unusable`` flag, or
    ``"unlabelled"`` when no keypoint has ``v > 0``), or ``None``.

    The last rule also covers records built without a reader. mmpose would keep an instance whose
    keypoint coordinates are non-zero but every ``v`` is 0 (all target weights zero); it teaches nothing,
    so it is dropped here - the one departure, and only for files without ``num_keypoints``.
    """
    if inst.iscrowd:
        return "crowd"
    if inst.unusable:
        return inst.unusable
    if inst.num_labelled == 0:
        return "unlabelled"
    return None


def sample_instances(
    instances: Sequence[Instance],
    log: logging.Logger | None = None,
    dataset: str | None = None,
    split: str = "train",
) -> list[Instance]:
    """The records usable as top-down samples (see :func:`drop_reason`), in file order.

    Logs (INFO) how many were kept and how many were dropped for each reason.
    """
    log = log or logger
    name = dataset or (instances[0].dataset if instances else "?")
    kept: list[Instance] = []
    dropped: dict[str, int] = {}
    for inst in instances:
        reason = drop_reason(inst)
        if reason is None:
            kept.append(inst)
        else:
            dropped[reason] = dropped.get(reason, 0) + 1
    detail = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items())) or "none"
    log.info(
        "%s %s: %d of %d records are samples (dropped: %s)", name, split, len(kept), len(instances), detail
    )
    return kept


def training_instances(
    instances: Sequence[Instance], log: logging.Logger | None = None, dataset: str | None = None
) -> list[Instance]:
    """Training samples: :func:`sample_instances` for the training split."""
    return sample_instances(instances, log=log, dataset=dataset, split="train")
