"""Object keypoint similarity (OKS), OKS-NMS and instance re-scoring.

Conventions
-----------
* Keypoints are ``(x, y, v_or_score)`` rows in **image pixels**.
* ``sigmas`` are the official per-keypoint OKS sigmas (COCO: 0.026 … 0.107). As in the
  COCO evaluation code, the per-keypoint constant is ``kappa = 2 * sigma`` and the object
  scale is ``s**2 = area``, so for one keypoint at distance ``d`` from the ground truth::

      oks_j = exp(-d**2 / (2 * area * kappa_j**2))

  and an instance's OKS is the mean of ``oks_j`` over the keypoints it averages over.

These are the formulas of ``pycocotools.cocoeval.COCOeval.computeOks`` (ground truth vs
prediction: average over labelled ground-truth joints, area of the ground truth) and of the
top-down COCO protocol used by mmpose / ViTPose for post-processing (prediction vs prediction:
the mean of the two areas).
"""

from __future__ import annotations

import numpy as np

__all__ = ["keypoint_oks", "oks_iou", "oks_nms", "oks_nms_per_image", "rescore", "soft_oks_nms"]

_EPS = float(np.spacing(1))


def _check_sigmas(sigmas: np.ndarray, num_keypoints: int, where: str) -> np.ndarray:
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sigmas.shape[0] != num_keypoints:
        raise ValueError(
            f"{where}: got {sigmas.shape[0]} OKS sigmas for {num_keypoints} keypoints; pass the "
            "sigmas of the skeleton the keypoints belong to."
        )
    return sigmas


def keypoint_oks(pred: np.ndarray, gt: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """One-to-one OKS between predictions and their ground truth (COCO formula).

    Args:
        pred: ``[N, K, 2+]`` predicted ``(x, y, ...)`` in image pixels.
        gt: ``[N, K, 3]`` ground truth ``(x, y, v)``; only joints with ``v > 0`` count.
        areas: ``[N]`` ground-truth object areas in pixels² (the COCO ``area`` field).
        sigmas: ``[K]`` OKS sigmas.

    Returns:
        ``[N]`` float64 OKS in ``[0, 1]``; ``nan`` for instances without any labelled joint.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[:2] != gt.shape[:2] or gt.shape[2] < 3:
        raise ValueError(
            f"keypoint_oks: pred must be [N, K, 2+] and gt [N, K, 3] with the same N, K; got "
            f"{pred.shape} and {gt.shape}"
        )
    n, k = gt.shape[:2]
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if areas.shape[0] != n:
        raise ValueError(f"keypoint_oks: got {areas.shape[0]} areas for {n} instances")
    var = (2.0 * _check_sigmas(sigmas, k, "keypoint_oks")) ** 2
    d2 = ((pred[..., :2] - gt[..., :2]) ** 2).sum(-1)
    e = d2 / var[None] / (areas[:, None] + _EPS) / 2.0
    labelled = gt[..., 2] > 0
    count = labelled.sum(1)
    total = np.where(labelled, np.exp(-e), 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def oks_iou(
    ref: np.ndarray,
    others: np.ndarray,
    ref_area: float,
    other_areas: np.ndarray,
    sigmas: np.ndarray,
    vis_thr: float | None = None,
) -> np.ndarray:
    """OKS between one pose and a set of poses (symmetric, used for OKS-NMS).

    Args:
        ref: ``[K, 3]`` pose ``(x, y, score)``.
        others: ``[M, K, 3]`` poses.
        ref_area, other_areas: object areas in pixels²; the scale is their mean.
        sigmas: ``[K]`` OKS sigmas.
        vis_thr: if given, only keypoints whose score exceeds it in *both* poses count
            (an OKS of 0 when none do). ``None`` (mmpose's default for COCO) uses all keypoints.

    Returns:
        ``[M]`` float64 OKS values.
    """
    ref = np.asarray(ref, dtype=np.float64)
    others = np.asarray(others, dtype=np.float64).reshape(-1, *ref.shape)
    var = (2.0 * _check_sigmas(sigmas, ref.shape[0], "oks_iou")) ** 2
    other_areas = np.asarray(other_areas, dtype=np.float64).reshape(-1)
    scale = (float(ref_area) + other_areas) / 2.0 + _EPS
    d2 = ((others[..., :2] - ref[None, :, :2]) ** 2).sum(-1)
    sim = np.exp(-d2 / var[None] / scale[:, None] / 2.0)
    if vis_thr is None:
        return sim.mean(1)
    used = (others[..., 2] > vis_thr) & (ref[None, :, 2] > vis_thr)
    count = used.sum(1)
    return np.where(count > 0, np.where(used, sim, 0.0).sum(1) / np.maximum(count, 1), 0.0)


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    thr: float = 0.9,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Greedy OKS non-maximum suppression over the poses of **one image**.

    Poses are visited in the order of :func:`descending_order` (mmpose's ``argsort()[::-1]``, so
    among equal scores the *later* pose comes first); every remaining pose whose OKS with the kept
    one is above ``thr`` is suppressed.

    Args:
        keypoints: ``[N, K, 3]`` poses ``(x, y, score)`` in image pixels.
        scores: ``[N]`` instance scores.
        areas: ``[N]`` instance areas in pixels².
        sigmas: ``[K]`` OKS sigmas.
        thr: suppression threshold (0.9 in the ViTPose/mmpose COCO protocol).
        vis_thr: see :func:`oks_iou`.

    Returns:
        int64 indices of the kept poses, highest score first.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[-1] < 3:
        raise ValueError(f"oks_nms: keypoints must be [N, K, 3], got {keypoints.shape}")
    n = keypoints.shape[0]
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if scores.shape[0] != n or areas.shape[0] != n:
        raise ValueError(f"oks_nms: {n} poses but {scores.shape[0]} scores and {areas.shape[0]} areas")
    order = descending_order(scores)
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        ovr = oks_iou(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas, vis_thr)
        order = rest[ovr <= thr]
    return np.asarray(keep, dtype=np.int64)


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Indices by decreasing score, exactly as mmpose 0.x orders poses for (soft) OKS-NMS.

    mmpose writes ``scores.argsort()[::-1]``: numpy's default ascending sort reversed. Ties are
    therefore visited in the reverse of the ascending sort's tie order (for the small per-image
    arrays of top-down evaluation numpy's introsort is an insertion sort, so equal scores come out
    *last index first*). Using the same call gives the same order on every input, not only on
    small ones, so the kept poses - and the AP - match to the last digit.
    """
    return np.asarray(scores).argsort()[::-1]


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    thr: float = 0.9,
    max_dets: int = 20,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Soft OKS-NMS of mmpose 0.x (``soft_oks_nms``, Gaussian decay) over one image.

    The best pose is kept; every other pose's score is multiplied by ``exp(-oks**2 / thr)``
    (``oks`` with the kept pose) and the rest are re-sorted; at most ``max_dets`` poses are kept.
    As in mmpose the decayed scores only decide the visiting order and the cut at ``max_dets``:
    the kept poses keep their original scores.

    Returns:
        int64 indices of the kept poses in visiting order.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    n = keypoints.shape[0]
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if scores.shape[0] != n or areas.shape[0] != n:
        raise ValueError(f"soft_oks_nms: {n} poses but {scores.shape[0]} scores and {areas.shape[0]} areas")
    if not thr > 0:
        raise ValueError(f"soft_oks_nms: thr must be > 0 (the Gaussian decay width), got {thr}")
    order = descending_order(scores)
    decayed = scores[order]
    keep: list[int] = []
    while order.size > 0 and len(keep) < max_dets:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ovr = oks_iou(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas, vis_thr)
        decayed = decayed[1:] * np.exp(-(ovr**2) / thr)
        resort = descending_order(decayed)
        order, decayed = rest[resort], decayed[resort]
    return np.asarray(keep, dtype=np.int64)


def oks_nms_per_image(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    image_ids: np.ndarray,
    sigmas: np.ndarray,
    thr: float = 0.9,
    vis_thr: float | None = None,
    soft: bool = False,
    max_dets: int = 20,
) -> np.ndarray:
    """:func:`oks_nms` (or :func:`soft_oks_nms` with ``soft=True``) applied to every image separately.

    Within an image the poses are taken in input order (mmpose: sorted by ``bbox_id``, i.e. the
    order of the boxes in the validation set), which decides the visiting order among equal scores.

    Returns:
        sorted int64 indices (into the inputs) of the kept poses.
    """
    image_ids = np.asarray(image_ids).reshape(-1)
    if image_ids.shape[0] != np.asarray(keypoints).shape[0]:
        raise ValueError(
            f"oks_nms_per_image: {image_ids.shape[0]} image ids for {np.asarray(keypoints).shape[0]} poses"
        )
    if image_ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(image_ids, kind="stable")
    _, starts = np.unique(image_ids[order], return_index=True)

    def nms(idx: np.ndarray) -> np.ndarray:
        if soft:
            return soft_oks_nms(keypoints[idx], scores[idx], areas[idx], sigmas, thr, max_dets, vis_thr)
        return oks_nms(keypoints[idx], scores[idx], areas[idx], sigmas, thr, vis_thr)

    kept = [idx[nms(idx)] for idx in np.split(order, starts[1:])]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def rescore(keypoint_scores: np.ndarray, box_scores: np.ndarray, vis_thr: float = 0.2) -> np.ndarray:
    """Instance score of the top-down COCO protocol (mmpose ``score_mode='bbox_keypoint'``).

    ``score = box_score * mean(keypoint scores > vis_thr)``. When no keypoint score exceeds
    ``vis_thr`` the keypoint factor is 0 (so the instance score is 0), exactly as in mmpose's
    ``CocoMetric`` / ``TopDownCocoDataset.evaluate`` where the running mean stays at its
    initial 0.

    Args:
        keypoint_scores: ``[N, K]`` per-keypoint confidences (heatmap maxima).
        box_scores: ``[N]`` detector (or ground-truth box: 1.0) scores.
        vis_thr: keypoint-score threshold (strictly greater counts).

    Returns:
        ``[N]`` float64 instance scores.
    """
    ks = np.asarray(keypoint_scores, dtype=np.float64)
    if ks.ndim != 2:
        raise ValueError(f"rescore: keypoint_scores must be [N, K], got {ks.shape}")
    bs = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    if bs.shape[0] != ks.shape[0]:
        raise ValueError(f"rescore: {ks.shape[0]} instances but {bs.shape[0]} box scores")
    above = ks > vis_thr
    count = above.sum(1)
    mean = np.where(count > 0, np.where(above, ks, 0.0).sum(1) / np.maximum(count, 1), 0.0)
    return bs * mean


def select_poses(
    keypoints: np.ndarray,
    bbox_scores: np.ndarray,
    areas: np.ndarray,
    image_ids: np.ndarray,
    sigmas: np.ndarray,
    vis_thr: float = 0.2,
    nms_thr: float = 0.9,
    use_rescore: bool = True,
    use_nms: bool = True,
    soft: bool = False,
    max_dets: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """The COCO top-down protocol's pose selection, shared by the evaluators and ``multipose.predict``:
    instance score = box score x mean keypoint score above ``vis_thr`` (:func:`rescore`; the box score alone with
    ``use_rescore=False``), then per-image (soft) OKS-NMS at ``nms_thr``. ``areas`` are the OKS scales of the
    poses (mmpose: ``prod(scale)`` of the padded box); a non-finite area falls back to the extent of the pose.

    Returns ``(kept indices, instance scores of all poses)``.
    """
    keypoints = np.asarray(keypoints, np.float64)
    bbox_scores = np.asarray(bbox_scores, np.float64)
    if keypoints.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    scores = rescore(keypoints[..., 2], bbox_scores, vis_thr) if use_rescore else bbox_scores.copy()
    if not use_nms:
        return np.arange(keypoints.shape[0], dtype=np.int64), scores
    areas = np.asarray(areas, np.float64)
    unknown = ~np.isfinite(areas)
    if unknown.any():
        extent = keypoints[..., :2].max(1) - keypoints[..., :2].min(1)
        areas = np.where(unknown, extent[:, 0] * extent[:, 1], areas)
    kept = oks_nms_per_image(
        keypoints, scores, areas, np.asarray(image_ids), sigmas, nms_thr, soft=soft, max_dets=max_dets
    )
    return np.asarray(kept, np.int64), scores
