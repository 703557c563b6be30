"""How the heads run during training (``conf/model``): ``heads_on`` (own samples or every sample), ``head_bn``
(BatchNorm statistics of a head's own samples or of the whole mixed batch) and ``sync_bn``, validated together,
plus the rule that switches every head onto every sample when a cross-head loss is on."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multipose.models.pose_model import HEAD_BN, HEADS_ON

__all__ = ["CROSS_HEAD_METHODS", "HeadOptions", "cross_head_losses_active", "resolve_heads_on"]

log = logging.getLogger(__name__)

#: loss groups whose weights compare heads with each other (``loss.<method>.*``); any weight > 0 needs every head
#: on every sample (``model.heads_on=all``)
CROSS_HEAD_METHODS = ("acae", "posebh")


def cross_head_losses_active(loss: Mapping[str, Any]) -> bool:
    """True when any numeric weight under ``loss.<method>`` (a method of :data:`CROSS_HEAD_METHODS`) is > 0."""

    def positive(node: Any) -> bool:
        if isinstance(node, Mapping):
            return any(positive(v) for v in node.values())
        return isinstance(node, (int, float)) and not isinstance(node, bool) and node > 0

    return any(positive(loss.get(m) or {}) for m in CROSS_HEAD_METHODS)


def resolve_heads_on(heads_on: str, loss: Mapping[str, Any]) -> str:
    """``model.heads_on``, switched to ``all`` when a cross-head loss is on."""
    if heads_on not in HEADS_ON:
        raise ValueError(f"model.heads_on must be one of {HEADS_ON}, got {heads_on!r}")
    if heads_on == "own" and cross_head_losses_active(loss):
        log.info(
            "model.heads_on=all: a cross-head loss weight under loss.{%s} is > 0",
            ",".join(CROSS_HEAD_METHODS),
        )
        return "all"
    return heads_on


@dataclass(frozen=True)
class HeadOptions:
    heads_on: str = "own"
    head_bn: str = "own"
    sync_bn: bool = False

    @classmethod
    def from_config(
        cls, model: Mapping[str, Any] | None, loss: Mapping[str, Any] | None = None
    ) -> HeadOptions:
        """From ``conf/model`` (and ``conf/loss`` for the cross-head rule); a bad value names the option."""
        opts = dict(model or {})
        head_bn = str(opts.get("head_bn", "own"))
        if head_bn not in HEAD_BN:
            raise ValueError(f"model.head_bn must be one of {HEAD_BN}, got {head_bn!r}")
        sync_bn = bool(opts.get("sync_bn", False))
        if sync_bn and head_bn != "batch":
            raise ValueError(
                "model.sync_bn=true needs model.head_bn=batch: with head_bn=own a rank without samples of a "
                "dataset would skip that head and the BatchNorm all-reduce would hang"
            )
        return cls(resolve_heads_on(str(opts.get("heads_on", "own")), dict(loss or {})), head_bn, sync_bn)
