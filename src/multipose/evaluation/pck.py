"""PCKh (MPII), bounding-box PCK, AUC and EPE.

All coordinates are image pixels, ``pred`` / ``gt`` are ``[N, K, 2]`` and ``visible`` is an
``[N, K]`` mask of *labelled* joints (COCO ``v > 0``; MPII's "visible" flag means labelled).
Unlabelled joints are ignored everywhere.

Definitions (they follow mmpose 1.x ``mmpose/evaluation/functional/keypoint_eval.py`` and
``metrics/keypoint_2d_metrics.py`` so numbers are comparable):

* **PCKh@t** (MPII): a joint is correct when ``||pred - gt|| <= t * head_size`` where
  ``head_size`` is MPII's normaliser ``0.6 * head-box diagonal``. ``<=`` is the MPII toolkit's
  comparison (mmpose 0.x ``MPIIDataset`` too). The headline number ("total") is the fraction
  of all labelled joints that are correct, i.e. the per-joint accuracies weighted by their
  joint counts (MPII/mmpose ``np.sum(PCKh * jnt_ratio)``); the official MPII total excludes
  pelvis and thorax, which :func:`pckh` does through ``exclude``. ``mean`` is the unweighted
  mean of per-joint accuracies.
* **PCK@t** (bounding box, hand / animal sets): correct when ``||pred - gt|| / max(w, h) < t``
  with the ground-truth box size, and the score is the unweighted mean over joints that have at
  least one labelled instance (mmpose ``PCKAccuracy(norm_item='bbox')``).
* **AUC** (mmpose ``keypoint_auc``): the PCK above, with every instance normalised by the same
  ``norm_factor`` pixels (default 30), averaged over thresholds ``i / num_thrs`` for
  ``i = 0 .. num_thrs-1``. Because the threshold 0 is included and the comparison is strict,
  a perfect prediction scores ``(num_thrs - 1) / num_thrs`` (0.95 for 20 thresholds), exactly
  as in mmpose.
* **EPE**: mean Euclidean distance in pixels over all labelled joints (mmpose ``keypoint_epe``).
* **tPCK** (torso-normalised PCK, mmpose's JHMDB ``tPCK``): the bounding-box PCK above with the
  normaliser ``||gt[a] - gt[b]||`` for a torso diagonal ``(a, b)`` (mmpose/JHMDB: left shoulder -
  right hip); where the ground-truth torso is shorter than 1 px the predicted torso is used, as there.
* **NME** (mmpose ``keypoint_nme``): the mean over all labelled joints of ``||pred - gt|| / norm``,
  with ``norm`` the inter-ocular distance of the ground truth (faces: 300W/COCO-WholeBody-face outer
  eye corners 36-45, WFLW 60-72, COFW 8-9) or a box size.

Instances whose normaliser is 0 (or not finite) are skipped as in mmpose's ``_calc_distances``; every
result carries the number skipped (``skipped``) so that callers can report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PCKResult", "auc", "bbox_pck", "epe", "nme", "normalized_distances", "pckh", "torso_sizes"]


@dataclass
class PCKResult:
    """Accuracy at one threshold."""

    per_joint: np.ndarray  # [K] accuracy per joint in [0, 1]; nan for joints never labelled
    counts: np.ndarray  # [K] number of labelled instances per joint
    mean: float  # unweighted mean over joints with counts > 0 (and not excluded)
    total: float  # correct / labelled over all non-excluded joints (joint-count weighted)
    skipped: int = 0  # instances with labelled joints left out because their normaliser is 0


def _validate(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, fn: str) -> tuple[np.ndarray, ...]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    visible = np.asarray(visible)
    if pred.ndim != 3 or pred.shape[-1] < 2:
        raise ValueError(f"{fn}: pred must be [N, K, 2], got {pred.shape}")
    if gt.shape[:2] != pred.shape[:2] or gt.shape[-1] < 2:
        raise ValueError(f"{fn}: gt must be [N, K, 2] like pred {pred.shape[:2]}, got {gt.shape}")
    if visible.shape != pred.shape[:2]:
        raise ValueError(f"{fn}: visible must be [N, K] = {pred.shape[:2]}, got {visible.shape}")
    return pred[..., :2], gt[..., :2], visible.astype(bool)


def normalized_distances(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray, fn: str = "normalized_distances"
) -> tuple[np.ndarray, np.ndarray]:
    """``[N, K]`` distances divided by the per-instance ``norm`` ``[N]`` and the usable mask.

    Instances whose normaliser is not positive and finite are left out of the mask (mmpose's
    ``_calc_distances``); :func:`skipped_instances` counts those that had labelled joints.
    """
    pred, gt, visible = _validate(pred, gt, visible, fn)
    norm = np.asarray(norm, dtype=np.float64).reshape(-1)
    if norm.shape[0] != pred.shape[0]:
        raise ValueError(f"{fn}: got {norm.shape[0]} normalisers for {pred.shape[0]} instances")
    usable = np.isfinite(norm) & (norm > 0)
    dist = np.linalg.norm(pred - gt, axis=-1) / np.where(usable, norm, 1.0)[:, None]
    return dist, visible & usable[:, None]


def skipped_instances(visible: np.ndarray, norm: np.ndarray) -> int:
    """Number of instances with labelled joints whose normaliser is 0 / not finite (left out)."""
    norm = np.asarray(norm, dtype=np.float64).reshape(-1)
    return int((~(np.isfinite(norm) & (norm > 0)) & np.asarray(visible, bool).any(1)).sum())


def _accuracy(correct: np.ndarray, visible: np.ndarray, exclude: Sequence[int]) -> PCKResult:
    counts = visible.sum(0)
    hits = (correct & visible).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    keep = np.ones(counts.shape[0], dtype=bool)
    keep[list(exclude)] = False
    used = keep & (counts > 0)
    mean = float(per_joint[used].mean()) if used.any() else 0.0
    total = float(hits[keep].sum() / counts[keep].sum()) if counts[keep].sum() > 0 else 0.0
    return PCKResult(per_joint=per_joint, counts=counts, mean=mean, total=total)


def pckh(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_sizes: np.ndarray,
    thr: float = 0.5,
    exclude: Sequence[int] = (),
) -> PCKResult:
    """MPII PCKh at ``thr`` (see module docstring).

    Args:
        pred, gt: ``[N, K, 2]`` pixels.
        visible: ``[N, K]`` labelled mask.
        head_sizes: ``[N]`` MPII normaliser ``0.6 * ||head box diagonal||`` in pixels.
        thr: fraction of the head size.
        exclude: joint indices left out of ``mean`` and ``total`` (MPII: pelvis 6, thorax 7);
            their per-joint accuracy is still reported.
    """
    dist, vis = normalized_distances(pred, gt, visible, head_sizes, fn="pckh")
    r = _accuracy(dist <= thr, vis, exclude)
    r.skipped = skipped_instances(visible, head_sizes)
    return r


def bbox_pck(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, bbox_sizes: np.ndarray, thr: float = 0.2
) -> PCKResult:
    """PCK normalised by the ground-truth box's longer side (mmpose ``norm_item='bbox'``).

    Args:
        bbox_sizes: ``[N]`` ``max(w, h)`` of each ground-truth box in pixels.

    The mmpose number is ``.mean`` (unweighted over joints).
    """
    dist, vis = normalized_distances(pred, gt, visible, bbox_sizes, fn="bbox_pck")
    r = _accuracy(dist < thr, vis, ())
    r.skipped = skipped_instances(visible, bbox_sizes)
    return r


def torso_sizes(pred: np.ndarray, gt: np.ndarray, pair: tuple[int, int]) -> tuple[np.ndarray, int]:
    """``[N]`` torso normalisers ``||gt[a] - gt[b]||`` (mmpose ``tPCK``) and how many fell back.

    Where the ground-truth torso is shorter than 1 px, the predicted one is used (mmpose warns
    "Torso Size < 1" and does the same).
    """
    a, b = pair
    pred, gt = np.asarray(pred, np.float64)[..., :2], np.asarray(gt, np.float64)[..., :2]
    sizes = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    short = sizes < 1
    sizes = np.where(short, np.linalg.norm(pred[:, a] - pred[:, b], axis=-1), sizes)
    return sizes, int(short.sum())


def nme(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray) -> tuple[float, int]:
    """mmpose ``keypoint_nme``: mean of ``||pred - gt|| / norm`` over the labelled joints of the
    instances with a usable normaliser; returns ``(nme, skipped instances)`` (``nan`` without joints)."""
    dist, vis = normalized_distances(pred, gt, visible, norm, fn="nme")
    value = float(dist[vis].mean()) if vis.any() else float("nan")
    return value, skipped_instances(visible, norm)


def auc(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm_factor: float = 30.0, num_thrs: int = 20
) -> float:
    """Area under the PCK curve, mmpose ``keypoint_auc`` (see module docstring)."""
    if norm_factor <= 0 or num_thrs < 1:
        raise ValueError(f"auc: norm_factor must be > 0 and num_thrs >= 1, got {norm_factor}, {num_thrs}")
    n = np.asarray(pred).shape[0]
    dist, vis = normalized_distances(pred, gt, visible, np.full(n, float(norm_factor)), fn="auc")
    accs = [_accuracy(dist < i / num_thrs, vis, ()).mean for i in range(num_thrs)]
    return float(np.mean(accs))


def epe(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> float:
    """Mean end-point error in pixels over labelled joints (``nan`` when none is labelled)."""
    pred, gt, vis = _validate(pred, gt, visible, "epe")
    if not vis.any():
        return float("nan")
    return float(np.linalg.norm(pred - gt, axis=-1)[vis].mean())
