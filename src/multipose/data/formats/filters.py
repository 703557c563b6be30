"""Instance filters applied after reading (counts are always logged; nothing is dropped silently)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..records import Instance
from ._common import logger

__all__ = ["training_instances"]


def training_instances(
    instances: Sequence[Instance], log: logging.Logger | None = None, dataset: str | None = None
) -> list[Instance]:
    """Instances usable as training targets: not crowd and with at least one labelled keypoint (v > 0).

    Logs (INFO) how many were kept and how many were dropped for each reason.
    """
    log = log or logger
    name = dataset or (instances[0].dataset if instances else "?")
    kept: list[Instance] = []
    n_crowd = n_unlabelled = 0
    for inst in instances:
        if inst.iscrowd:
            n_crowd += 1
        elif inst.num_labelled == 0:
            n_unlabelled += 1
        else:
            kept.append(inst)
    log.info(
        "%s: %d of %d instances kept for training (dropped %d crowd, %d without labelled keypoints)",
        name, len(kept), len(instances), n_crowd, n_unlabelled,
    )
    return kept
