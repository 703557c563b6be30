"""Label-free consistency between heads: cross-head disagreement (CHD).

Two heads that predict joints with the same semantic tag (``multipose.skeletons.correspondence``) on the same
instance should put them at the same place. CHD is their distance in units of the instance's box size
``sqrt(w * h)``; pooled over instances, head pairs and shared joints it gives ``CHD`` (mean) and ``CHD_p90``
(90th percentile). It needs no labels, so it is logged on every validation set, real mixes included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["box_size", "cross_head_distances", "summarize_chd"]


def box_size(wh: np.ndarray) -> np.ndarray:
    """``[N]`` box size ``sqrt(w * h)`` of ``[N, 2+]`` boxes given as ``(w, h)`` (or ``xywh``: pass ``[:, 2:]``)."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    return np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 1e-12, None))


def cross_head_distances(
    pred_a: np.ndarray, pred_b: np.ndarray, pairs: Sequence[tuple[int, int]], sizes: np.ndarray
) -> np.ndarray:
    """``[N, P]`` distances ``||a[:, i] - b[:, j]|| / size`` for the joint pairs ``(i, j)``.

    ``pred_a [N, Ka, 2+]`` and ``pred_b [N, Kb, 2+]`` are two heads' predictions (image pixels) of the same
    ``N`` instances, ``sizes [N]`` their box sizes (:func:`box_size`).
    """
    a = np.asarray(pred_a, np.float64)[..., :2]
    b = np.asarray(pred_b, np.float64)[..., :2]
    sizes = np.asarray(sizes, np.float64).reshape(-1)
    if not (a.shape[0] == b.shape[0] == sizes.shape[0]):
        raise ValueError(
            f"cross_head_distances: {a.shape[0]} and {b.shape[0]} predictions for {sizes.shape[0]} boxes"
        )
    if len(pairs) == 0:
        return np.zeros((a.shape[0], 0))
    ia = np.array([p[0] for p in pairs])
    ib = np.array([p[1] for p in pairs])
    if ia.max() >= a.shape[1] or ib.max() >= b.shape[1] or min(ia.min(), ib.min()) < 0:
        raise ValueError(
            f"cross_head_distances: joint pairs out of range for skeletons with {a.shape[1]} and {b.shape[1]} keypoints"
        )
    return np.linalg.norm(a[:, ia] - b[:, ib], axis=-1) / sizes[:, None]


def summarize_chd(distances: np.ndarray) -> dict[str, float]:
    """``{"CHD": mean, "CHD_p90": 90th percentile}`` of pooled distances (``nan`` when there are none)."""
    d = np.asarray(distances, np.float64).reshape(-1)
    if d.size == 0:
        return {"CHD": float("nan"), "CHD_p90": float("nan")}
    return {"CHD": float(d.mean()), "CHD_p90": float(np.percentile(d, 90))}
