"""Per-dataset COCO-style protocols and keypoint partitions.

Every COCO-style set is scored the way mmpose 0.x (the code base of ViTPose / ViTPose++) scores it, with
xtcocotools; :mod:`.coco` reproduces each xtcocotools switch on top of pycocotools (see its docstring):

=================  =========  =================  =====================================  ==================
protocol           use_area   drop_zero_score    parts                                  crowd_thresholds
=================  =========  =================  =====================================  ==================
``coco``           True       True               -                                      -
``aic``            False      True               -                                      -
``crowdpose``      False      True               -                                      (0.2, 0.8)
``coco_wholebody`` True       True               body, foot, face, lefthand, righthand  -
=================  =========  =================  =====================================  ==================

``protocol: auto`` picks the row named like the skeleton (``aic``, ``crowdpose``, ``coco_wholebody``) and
``coco`` for every other skeleton (COCO, OCHuman, AP-10K, APT-36K, Halpe, ...). Each column can be set on
its own through the evaluator options of the same name.

A *partition* (``parts``) maps part names to keypoints of the skeleton, each given as a keypoint name or
a ``"start:end"`` index range (end exclusive), e.g. ``{upper: ["0:11"], lower: ["11:17"]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PROTOCOLS", "WHOLEBODY_PARTS", "protocol_defaults", "resolve_parts"]

#: COCO-WholeBody parts in keypoint order (xtcocotools' ``keypoints_<part>`` iou types).
WHOLEBODY_PARTS: dict[str, list[str]] = {
    "body": ["0:17"],
    "foot": ["17:23"],
    "face": ["23:91"],
    "lefthand": ["91:112"],
    "righthand": ["112:133"],
}

PROTOCOLS: dict[str, dict[str, Any]] = {
    "coco": {"use_area": True, "drop_zero_score": True, "parts": None, "crowd_thresholds": None},
    "aic": {"use_area": False, "drop_zero_score": True, "parts": None, "crowd_thresholds": None},
    "crowdpose": {"use_area": False, "drop_zero_score": True, "parts": None, "crowd_thresholds": (0.2, 0.8)},
    "coco_wholebody": {
        "use_area": True,
        "drop_zero_score": True,
        "parts": WHOLEBODY_PARTS,
        "crowd_thresholds": None,
        # xtcocotools computes a prediction's area from its 'keypoints' field: the body part
        "det_area_keypoints": WHOLEBODY_PARTS["body"],
    },
}


def protocol_defaults(protocol: str, skeleton_name: str) -> dict[str, Any]:
    """The option values of ``protocol`` (``"auto"``: by skeleton name, else ``"coco"``).

    ``det_area_keypoints`` (not an option; None = every keypoint): the keypoints whose extent is a
    prediction's area for the area ranges (APM/APL), as xtcocotools derives it.
    """
    if protocol == "auto":
        protocol = skeleton_name if skeleton_name in PROTOCOLS else "coco"
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown COCO protocol {protocol!r}; choose 'auto' or one of {sorted(PROTOCOLS)} "
            "(evaluation option 'protocol')"
        )
    return {"det_area_keypoints": None, **PROTOCOLS[protocol]}


def resolve_parts(
    parts: Mapping[str, Sequence[str | int]] | None, keypoint_names: Sequence[str], where: str = "parts"
) -> dict[str, list[int]]:
    """``{part: sorted keypoint indices}`` from names, indices or ``"start:end"`` ranges."""
    if not parts:
        return {}
    names = list(keypoint_names)
    k = len(names)
    out: dict[str, list[int]] = {}
    for part, items in parts.items():
        if isinstance(items, (str, int)):
            items = [items]
        idx: set[int] = set()
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                rng = [item]
            elif isinstance(item, str) and item in names:
                rng = [names.index(item)]
            elif isinstance(item, str) and ":" in item:
                try:
                    a, b = (int(v) for v in item.split(":"))
                except ValueError:
                    raise ValueError(
                        f"{where}.{part}: range {item!r} must be 'start:end' with integers"
                    ) from None
                rng = list(range(a, b))
            else:
                raise ValueError(
                    f"{where}.{part}: {item!r} is neither a keypoint of the skeleton nor a 'start:end' range; "
                    f"keypoints: {names[:8]}{' ...' if k > 8 else ''}"
                )
            bad = [i for i in rng if not 0 <= i < k]
            if bad or not rng:
                raise ValueError(
                    f"{where}.{part}: {item!r} selects no keypoint or indices outside 0..{k - 1}"
                )
            idx.update(rng)
        out[str(part)] = sorted(idx)
    return out
