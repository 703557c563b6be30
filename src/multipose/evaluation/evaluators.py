"""Per-dataset evaluators with one interface for the LightningModule.

Usage::

    ev = build_evaluator("coco", "syn_coco", gt_instances, skeleton)
    ev.reset()
    for batch, preds in validation:              # preds [B, K, 3] (x, y, score), image pixels
        ev.update(preds, image_ids=batch["image_id"], ann_ids=batch["ann_id"],
                  bbox_scores=batch["bbox_score"], areas=batch["area"])
    metrics = ev.compute(out_dir)                # {"AP": ..., "AP50": ..., ...}

``instances`` are always the **ground-truth** records of the validation split (for COCO with
detected boxes: the GT annotations, not the detection records). Predictions are matched to
them by ``ann_id`` (PCK-style metrics) or evaluated per image (COCO AP).

Distributed evaluation: ``state()`` returns plain numpy arrays; gather them from every rank
(e.g. ``torch.distributed.all_gather_object(states, ev.state())``), then ``ev.merge(states)``
(which *replaces* the accumulated predictions by the gathered ones, this rank's included) and
``compute``. Repeated predictions of one sample (``DistributedSampler`` padding) are dropped
in :meth:`compute`: the first occurrence in accumulation order is kept (so the result is the
same for every rank given the gathered order). A prediction's identity is, in order of
preference, its ``sample_ids`` entry (if given, ``>= 0``), its ``ann_id`` (``>= 0``), or, for
detection boxes without either, ``(image_id, area, bbox_score)``.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import _STATE_KEYS, BaseEvaluator, _to_numpy, skeleton_sigmas  # noqa: F401
from .coco import build_coco_gt, evaluate_keypoints, results_to_coco, write_results
from .cross_skeleton import CrossSkeletonEvaluator
from .nms import select_poses
from .pck import auc, bbox_pck, epe, nme, pckh, torso_sizes
from .protocols import protocol_defaults, resolve_parts

log = logging.getLogger(__name__)

__all__ = [
    "BaseEvaluator",
    "CocoEvaluator",
    "NMEEvaluator",
    "PCKEvaluator",
    "PCKhEvaluator",
    "available_metrics",
    "build_evaluator",
    "check_options",
]


class CocoEvaluator(BaseEvaluator):
    """COCO keypoint AP with the top-down protocol of ViTPose/mmpose.

    Instance score = box score × mean keypoint score above ``vis_thr`` (:func:`rescore`), then
    per-image OKS-NMS at ``oks_nms_thr`` (skeleton sigmas), then pycocotools ``COCOeval`` with the
    skeleton's sigmas and the dataset's protocol (:mod:`.protocols`: xtcocotools' ``use_area``,
    zero-score dropping, COCO-WholeBody parts, CrowdPose crowd types). The results file
    ``<out_dir>/results_<dataset>.json`` is written in the standard COCO keypoint results format.

    OKS-NMS scores poses with mmpose's area, the padded aspect-fixed box ``prod(scale)`` in pixels²:
    pass ``scales`` (the batch's ``scale``) to :meth:`update`; explicit ``areas`` are used otherwise,
    and where both are missing the area of the predicted keypoints' bounding box.

    Args:
        use_nms: apply OKS-NMS (default on; with ground-truth boxes it rarely removes anything).
        oks_nms_thr: OKS threshold above which the lower-scored pose is suppressed.
        vis_thr: keypoint-score threshold of the re-scoring.
        use_rescore: if False the box score is the instance score.
        soft_nms: mmpose's soft OKS-NMS instead of the greedy one (keeps at most ``nms_max_dets``).
        nms_max_dets: poses kept per image by soft OKS-NMS (mmpose: 20).
        image_ids: every image id of the annotation file; predictions on images without annotations
            are then scored as false positives (detection files cover every image).
        protocol: ``auto`` | ``coco`` | ``aic`` | ``crowdpose`` | ``coco_wholebody`` (:mod:`.protocols`).
        use_area, drop_zero_score, parts, crowd_thresholds: override the protocol's value
            (``parts: {}`` switches COCO-WholeBody's per-part AP off). Each part adds ``AP_<part>``.
        pck_thr: also report ``PCK@<pck_thr>``, bounding-box PCK of each ground-truth-box prediction against its
            own instance (mmpose's definition: distance over the box's longer side, unweighted mean over
            labelled joints), before re-scoring and NMS. A threshold that reads the same under every skeleton's
            sigmas, next to AP (AIC's and COCO-WholeBody's official sigmas make their OKS much stricter than
            COCO's). Only computed when every prediction carries the ``ann_id`` of a ground-truth instance
            (ground-truth boxes, not detections); ``None`` switches it off.
    """

    metric = "coco"

    def __init__(
        self,
        dataset_name: str,
        instances: Sequence[Any],
        skeleton: Any,
        use_nms: bool = True,
        oks_nms_thr: float = 0.9,
        vis_thr: float = 0.2,
        use_rescore: bool = True,
        soft_nms: bool = False,
        nms_max_dets: int = 20,
        image_ids: Sequence[int] | None = None,
        protocol: str = "auto",
        use_area: bool | None = None,
        drop_zero_score: bool | None = None,
        parts: Mapping[str, Sequence[str | int]] | None = None,
        crowd_thresholds: Sequence[float] | None = None,
        pck_thr: float | None = 0.1,
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        self.sigmas = skeleton_sigmas(skeleton)
        self.pck_thr = None if pck_thr is None else float(pck_thr)
        self.use_nms = use_nms
        self.nms_thr = oks_nms_thr
        self.vis_thr = vis_thr
        self.use_rescore = use_rescore
        self.soft_nms = bool(soft_nms)
        self.nms_max_dets = int(nms_max_dets)
        proto = protocol_defaults(protocol, str(getattr(skeleton, "name", "")))
        for key, value in (
            ("use_area", use_area),
            ("drop_zero_score", drop_zero_score),
            ("parts", parts),
            ("crowd_thresholds", crowd_thresholds),
        ):
            if value is not None:
                proto[key] = value
        self.use_area = bool(proto["use_area"])
        self.drop_zero_score = bool(proto["drop_zero_score"])
        self.parts = resolve_parts(proto["parts"], skeleton.keypoints, where=f"{self._where()}: option parts")
        thr = proto["crowd_thresholds"]
        if thr is not None and (len(thr) != 2 or not float(thr[0]) <= float(thr[1])):
            raise ValueError(
                f"{self._where()}: option crowd_thresholds must be [t0, t1] with t0 <= t1, got {thr}"
            )
        self.crowd_thresholds = None if thr is None else (float(thr[0]), float(thr[1]))
        area_kp = proto["det_area_keypoints"]
        self.det_area_keypoints = (
            resolve_parts({"area": area_kp}, skeleton.keypoints)["area"] if area_kp is not None else None
        )
        self.gt = build_coco_gt(
            self.instances,
            skeleton.keypoints,
            category_name=str(getattr(skeleton, "name", "person")),
            images=None
            if image_ids is None
            else (
                {int(i): dict(f or {}) for i, f in image_ids.items()}
                if isinstance(image_ids, Mapping)
                else [int(i) for i in image_ids]
            ),
            use_area=self.use_area,
        )
        if image_ids is None:
            log.info(
                "%s: no image list given (option image_ids); predictions on images without annotations "
                "cannot be scored",
                self._where(),
            )
        self.last_summary: str = ""
        self.last_results_path: Path | None = None

    def select(self, st: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Re-score and OKS-NMS; returns ``(keypoints [M,K,3], scores [M], image_ids [M])``."""
        preds, image_ids = st["preds"].astype(np.float64), st["image_ids"]
        if preds.shape[0] == 0:
            return preds, np.zeros(0), image_ids
        kept, scores = select_poses(
            preds,
            st["bbox_scores"],
            st["areas"],
            image_ids,
            self.sigmas,
            self.vis_thr,
            self.nms_thr,
            use_rescore=self.use_rescore,
            use_nms=self.use_nms,
            soft=self.soft_nms,
            max_dets=self.nms_max_dets,
        )
        if kept.size < preds.shape[0]:
            log.info(
                "%s: OKS-NMS removed %d of %d poses",
                self._where(),
                preds.shape[0] - kept.size,
                preds.shape[0],
            )
        return preds[kept], scores[kept], image_ids[kept]

    def _evaluate(self, results_path: Path) -> dict[str, float]:
        opts = {"drop_zero_score": self.drop_zero_score, "det_area_keypoints": self.det_area_keypoints}
        res = evaluate_keypoints(
            self.gt, results_path, self.sigmas, crowd_thresholds=self.crowd_thresholds, **opts
        )
        summaries = [res.summary]
        metrics = dict(res.metrics)
        for part, idx in self.parts.items():
            part_res = evaluate_keypoints(self.gt, results_path, self.sigmas, part=idx, **opts)
            metrics[f"AP_{part}"] = part_res.metrics["AP"]
            summaries.append(f"-- part '{part}' ({len(idx)} keypoints)\n{part_res.summary}")
        self.last_summary = "\n".join(summaries)
        return metrics

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        st = self._deduplicated()
        kpts, scores, image_ids = self.select(st)
        results = results_to_coco(image_ids, kpts, scores)
        name = f"results_{self.dataset_name}.json"
        if out_dir is None:
            with tempfile.TemporaryDirectory() as tmp:
                metrics = self._evaluate(write_results(results, Path(tmp) / name))
            self.last_results_path = None
        else:
            self.last_results_path = write_results(results, Path(out_dir) / name)
            metrics = self._evaluate(self.last_results_path)
        log.debug("%s COCO keypoint evaluation:\n%s", self._where(), self.last_summary)
        table = self._instances_by_ann_id() if self.pck_thr is not None else {}
        if st["ann_ids"].size and all(int(a) in table for a in st["ann_ids"]):
            gts = self._gather_gt(st["ann_ids"])
            gt_k = np.stack([np.asarray(g.keypoints, np.float64) for g in gts])
            sizes = np.array([float(np.max(np.asarray(g.bbox, np.float64)[2:4])) for g in gts])
            metrics[f"PCK@{self.pck_thr:g}"] = bbox_pck(
                st["preds"][..., :2].astype(np.float64), gt_k[..., :2], gt_k[..., 2] > 0, sizes, self.pck_thr
            ).mean
        return metrics


class PCKhEvaluator(BaseEvaluator):
    """MPII-style PCKh from ground-truth boxes (``instance.head_size`` is the normaliser).

    Keys (for the default ``thrs=(0.5, 0.1)``): ``PCKh@0.5`` and ``PCKh@0.1`` — the MPII total
    (joint-count weighted, joints in ``exclude_joints`` left out); ``PCKh@0.5/all`` — the same
    over every joint; ``PCKh@0.5/mean`` — unweighted mean over joints; ``PCKh@0.5/<joint>`` —
    per-joint accuracy for every joint that has labels. Values are fractions in [0, 1].
    ``skipped_instances``: instances left out because their head size is 0 (mmpose skips them).
    ``pckh_normaliser_neck_head``: the fraction of scored instances whose head size is the
    upper-neck-head-top distance instead of the official ``0.6 x head-box diagonal`` (a reader sets
    ``instance.head_size_source = "neck_head"``); anything above 0 means the numbers are not
    comparable with the MPII benchmark, and a warning says so.

    Args:
        thrs: thresholds as fractions of the head size; the first gets the breakdown.
        exclude_joints: joint names left out of the total; default: MPII's ``pelvis`` and
            ``thorax`` where the skeleton has joints of these names.
    """

    metric = "pckh"

    def __init__(
        self,
        dataset_name: str,
        instances: Sequence[Any],
        skeleton: Any,
        thrs: Sequence[float] = (0.5, 0.1),
        exclude_joints: Sequence[str] | None = None,
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        if not thrs:
            raise ValueError(f"{self._where()}: option thrs must list at least one threshold")
        self.thrs = tuple(float(t) for t in thrs)
        names = list(skeleton.keypoints)
        if exclude_joints is None:
            exclude_joints = [n for n in ("pelvis", "thorax") if n in names]
        unknown = [n for n in exclude_joints if n not in names]
        if unknown:
            raise ValueError(
                f"{self._where()}: exclude_joints {unknown} are not keypoints of the skeleton {names}"
            )
        self.exclude = [names.index(n) for n in exclude_joints]
        missing = [
            int(i.ann_id) for i in self.instances if i.head_size is None or not np.isfinite(i.head_size)
        ]
        if missing:
            raise ValueError(
                f"{self._where()}: PCKh needs instance.head_size; ann_ids {missing[:5]} (of {len(missing)}) "
                "lack it. Use an MPII-style reader that fills head_size (name the official head boxes with "
                "val.head_boxes: mpii_gt_val.mat), or metric 'pck'."
            )

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        st = self._deduplicated()
        gts = self._gather_gt(st["ann_ids"])
        if not gts:
            log.warning("%s: no predictions were accumulated; PCKh is 0", self._where())
        k = self.num_keypoints
        gt_k = np.stack([np.asarray(g.keypoints, np.float64) for g in gts]) if gts else np.zeros((0, k, 3))
        heads = np.array([float(g.head_size) for g in gts])
        pred, vis = st["preds"][..., :2], gt_k[..., 2] > 0
        out: dict[str, float] = {}
        for j, thr in enumerate(self.thrs):
            r = pckh(pred, gt_k[..., :2], vis, heads, thr, exclude=self.exclude)
            key = f"PCKh@{thr:g}"
            out[key] = r.total
            if j == 0:
                out[f"{key}/all"] = pckh(pred, gt_k[..., :2], vis, heads, thr).total
                out[f"{key}/mean"] = r.mean
                for name, acc, cnt in zip(self.skeleton.keypoints, r.per_joint, r.counts):
                    if cnt > 0:
                        out[f"{key}/{name}"] = float(acc)
                out["skipped_instances"] = float(r.skipped)
                if r.skipped:
                    log.warning(
                        "%s: %d instances with head size 0 skipped (as mmpose)", self._where(), r.skipped
                    )
        fallback = [getattr(g, "head_size_source", None) == "neck_head" for g in gts]
        out["pckh_normaliser_neck_head"] = float(np.mean(fallback)) if fallback else 0.0
        if any(fallback):
            log.warning(
                "%s: PCKh of %d of %d instances is normalised by the upper_neck-head_top distance, NOT the "
                "official 0.6 x head-box diagonal; the numbers are not comparable with MPII results. Name "
                "the official head boxes in the data entry: val.head_boxes: mpii/annotations/mpii_gt_val.mat",
                self._where(),
                sum(fallback),
                len(fallback),
            )
        return out


class PCKEvaluator(BaseEvaluator):
    """PCK, AUC and EPE (hand / animal sets, mmpose definitions).

    Keys: ``PCK@<thr>`` for each of ``thrs``, normalised by the ground-truth ``bbox``'s longer
    side (``norm: bbox``, mmpose ``PCK``) or by a torso diagonal (``norm: torso``, mmpose/JHMDB
    ``tPCK``: ``torso_joints``, default the keypoints tagged left_shoulder and right_hip);
    ``PCK@<thr>/<part>`` for each of ``parts`` (:func:`.protocols.resolve_parts`); ``AUC``
    (normalised by ``auc_norm_factor`` pixels, ``auc_num_thrs`` thresholds); ``EPE`` (pixels;
    ``nan`` without labelled joints); ``skipped_instances`` (normaliser 0, left out as in mmpose).
    """

    metric = "pck"

    def __init__(
        self,
        dataset_name: str,
        instances: Sequence[Any],
        skeleton: Any,
        thrs: Sequence[float] = (0.2,),
        auc_norm_factor: float = 30.0,
        auc_num_thrs: int = 20,
        norm: str = "bbox",
        torso_joints: Sequence[str] | None = None,
        parts: Mapping[str, Sequence[str | int]] | None = None,
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        self.thrs = tuple(float(t) for t in thrs)
        self.auc_norm_factor = float(auc_norm_factor)
        self.auc_num_thrs = int(auc_num_thrs)
        if norm not in ("bbox", "torso"):
            raise ValueError(f"{self._where()}: option norm must be 'bbox' or 'torso', got {norm!r}")
        self.norm = norm
        self.torso = _joint_pair(
            skeleton, torso_joints, ("left_shoulder", "right_hip"), self._where(), "torso_joints"
        )
        if norm == "torso" and self.torso is None:
            raise ValueError(
                f"{self._where()}: norm 'torso' needs option torso_joints [a, b] (keypoint names); the skeleton "
                "has no keypoints tagged left_shoulder and right_hip"
            )
        self.parts = resolve_parts(parts, skeleton.keypoints, where=f"{self._where()}: option parts")

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        st = self._deduplicated()
        gts = self._gather_gt(st["ann_ids"])
        if not gts:
            log.warning("%s: no predictions were accumulated; PCK and AUC are 0", self._where())
        k = self.num_keypoints
        gt_k = np.stack([np.asarray(g.keypoints, np.float64) for g in gts]) if gts else np.zeros((0, k, 3))
        pred, vis = st["preds"][..., :2].astype(np.float64), gt_k[..., 2] > 0
        if self.norm == "torso":
            sizes, fallback = torso_sizes(pred, gt_k, self.torso)
            if fallback:
                log.warning(
                    "%s: %d ground-truth torsos < 1 px; the predicted torso is used (as mmpose)",
                    self._where(),
                    fallback,
                )
        else:
            sizes = np.array([float(np.max(np.asarray(g.bbox, np.float64)[2:4])) for g in gts])
        out: dict[str, float] = {}
        skipped = 0
        for t in self.thrs:
            r = bbox_pck(pred, gt_k[..., :2], vis, sizes, t)
            out[f"PCK@{t:g}"], skipped = r.mean, r.skipped
            for part, idx in self.parts.items():
                out[f"PCK@{t:g}/{part}"] = bbox_pck(
                    pred[:, idx], gt_k[:, idx, :2], vis[:, idx], sizes, t
                ).mean
        out["AUC"] = auc(pred, gt_k[..., :2], vis, self.auc_norm_factor, self.auc_num_thrs)
        out["EPE"] = epe(pred, gt_k[..., :2], vis)
        out["skipped_instances"] = float(skipped)
        if skipped:
            log.warning("%s: %d instances with normaliser 0 skipped (as mmpose)", self._where(), skipped)
        return out


#: mmpose's inter-ocular keypoint pairs (outer eye corners) of the face sets, by skeleton name.
NME_KEYPOINT_PAIRS: dict[str, tuple[int, int]] = {
    "300w": (36, 45),
    "coco_wholebody_face": (36, 45),
    "wflw": (60, 72),
    "cofw": (8, 9),
    "lapa": (66, 79),
}


class NMEEvaluator(BaseEvaluator):
    """Normalised mean error (face / hand sets; mmpose ``NME``), lower is better.

    Keys: ``NME`` (fraction of the normaliser; mmpose reports the same number) and
    ``skipped_instances``.

    Args:
        norm: ``keypoints`` - distance between two ground-truth keypoints (``norm_joints``; default
            mmpose's outer eye corners for 300W / COCO-WholeBody-face / WFLW / COFW / LaPa by
            skeleton name); ``bbox`` - the ground-truth box's longer side (hand sets).
        norm_joints: the two keypoint names (or indices) for ``norm: keypoints``.
    """

    metric = "nme"

    def __init__(
        self,
        dataset_name: str,
        instances: Sequence[Any],
        skeleton: Any,
        norm: str = "keypoints",
        norm_joints: Sequence[str | int] | None = None,
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        if norm not in ("keypoints", "bbox"):
            raise ValueError(f"{self._where()}: option norm must be 'keypoints' or 'bbox', got {norm!r}")
        self.norm = norm
        self.pair: tuple[int, int] | None = None
        if norm == "keypoints":
            if norm_joints is None:
                self.pair = NME_KEYPOINT_PAIRS.get(str(getattr(skeleton, "name", "")))
            else:
                self.pair = _joint_pair(skeleton, norm_joints, None, self._where(), "norm_joints")
            if self.pair is None:
                raise ValueError(
                    f"{self._where()}: NME with norm 'keypoints' needs option norm_joints [a, b] (e.g. the outer "
                    f"eye corners); known defaults: {sorted(NME_KEYPOINT_PAIRS)}. Or use norm 'bbox'."
                )

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        st = self._deduplicated()
        gts = self._gather_gt(st["ann_ids"])
        k = self.num_keypoints
        gt_k = np.stack([np.asarray(g.keypoints, np.float64) for g in gts]) if gts else np.zeros((0, k, 3))
        pred, vis = st["preds"][..., :2].astype(np.float64), gt_k[..., 2] > 0
        if self.norm == "keypoints":
            a, b = self.pair
            sizes = np.linalg.norm(gt_k[:, a, :2] - gt_k[:, b, :2], axis=-1)
        else:
            sizes = np.array([float(np.max(np.asarray(g.bbox, np.float64)[2:4])) for g in gts])
        value, skipped = nme(pred, gt_k[..., :2], vis, sizes)
        if skipped:
            log.warning("%s: %d instances with normaliser 0 skipped (as mmpose)", self._where(), skipped)
        return {"NME": value, "skipped_instances": float(skipped)}


def _joint_pair(
    skeleton: Any,
    joints: Sequence[str | int] | None,
    default_tags: tuple[str, str] | None,
    where: str,
    option: str,
) -> tuple[int, int] | None:
    """Two keypoint indices from names / indices, or from semantic tags when ``joints`` is None."""
    names = list(skeleton.keypoints)
    if joints is None:
        if default_tags is None or not hasattr(skeleton, "find_semantic"):
            return None
        found = [skeleton.find_semantic(t) for t in default_tags]
        return None if None in found else (int(found[0]), int(found[1]))
    if len(joints) != 2:
        raise ValueError(f"{where}: option {option} must name two keypoints, got {list(joints)}")
    out = []
    for j in joints:
        if isinstance(j, int) and 0 <= j < len(names):
            out.append(j)
        elif j in names:
            out.append(names.index(j))
        else:
            raise ValueError(f"{where}: option {option}: {j!r} is not a keypoint of skeleton {names[:8]}...")
    return out[0], out[1]


#: Evaluation-wide options that a caller may pass to every metric; metrics that do not use
#: them ignore them (any other unknown option is an error).
SHARED_OPTIONS = frozenset({"use_nms", "oks_nms_thr", "vis_thr", "soft_nms", "image_ids"})


def _registry() -> dict[str, type[BaseEvaluator]]:
    return {
        "coco": CocoEvaluator,
        "pckh": PCKhEvaluator,
        "pck": PCKEvaluator,
        "nme": NMEEvaluator,
        "cross": CrossSkeletonEvaluator,
    }


def available_metrics() -> list[str]:
    """Metric names accepted by :func:`build_evaluator`."""
    return sorted(_registry())


def check_options(metric: str, opts: Mapping[str, Any], dataset_name: str = "?") -> dict[str, Any]:
    """The options of ``opts`` that ``metric``'s evaluator takes; unknown metric / option names raise a
    ValueError listing the valid ones (options in :data:`SHARED_OPTIONS` are dropped silently)."""
    reg = _registry()
    if metric not in reg:
        raise ValueError(
            f"unknown evaluation metric '{metric}' for dataset '{dataset_name}'; choose one of {sorted(reg)}"
        )
    params = [
        n
        for n, p in inspect.signature(reg[metric].__init__).parameters.items()
        if n not in ("self", "dataset_name", "instances", "skeleton") and p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    unknown = sorted(set(opts) - set(params) - SHARED_OPTIONS)
    if unknown:
        raise ValueError(
            f"evaluation options {unknown} are not valid for metric '{metric}' (dataset '{dataset_name}'); "
            f"valid options: {params}"
        )
    return {k: v for k, v in opts.items() if k in params}


def build_evaluator(
    metric: str, dataset_name: str, instances: Sequence[Any], skeleton: Any, **opts: Any
) -> BaseEvaluator:
    """Build the evaluator for ``metric`` ("coco" | "pckh" | "pck" | "nme" | "cross").

    ``opts`` are the keyword arguments of the evaluator class (e.g. ``oks_nms_thr=0.9`` for
    "coco", ``thrs=[0.5, 0.1]`` for "pckh", ``head_name="aic"`` for "cross", where
    ``skeleton`` is the evaluated head's skeleton). Options in :data:`SHARED_OPTIONS` are
    ignored by metrics that do not use them; any other unknown option raises an error listing
    the valid ones.
    """
    kwargs = check_options(metric, opts, dataset_name)
    cls = _registry()[metric]
    if metric == "cross":
        head_name = kwargs.pop("head_name", None) or str(skeleton.name)
        return cls(dataset_name, head_name, instances, skeleton, **kwargs)
    return cls(dataset_name, instances, skeleton, **kwargs)
