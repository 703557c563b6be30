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
from .nms import oks_nms_per_image, rescore
from .pck import auc, bbox_pck, epe, pckh
from .protocols import protocol_defaults, resolve_parts

log = logging.getLogger(__name__)

__all__ = [
    "BaseEvaluator",
    "CocoEvaluator",
    "PCKEvaluator",
    "PCKhEvaluator",
    "available_metrics",
    "build_evaluator",
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
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        self.sigmas = skeleton_sigmas(skeleton)
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
            raise ValueError(f"{self._where()}: option crowd_thresholds must be [t0, t1] with t0 <= t1, got {thr}")
        self.crowd_thresholds = None if thr is None else (float(thr[0]), float(thr[1]))
        self.gt = build_coco_gt(
            self.instances,
            skeleton.keypoints,
            category_name=str(getattr(skeleton, "name", "person")),
            images=None if image_ids is None else [int(i) for i in image_ids],
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
        scores = (
            rescore(preds[..., 2], st["bbox_scores"], self.vis_thr)
            if self.use_rescore
            else st["bbox_scores"].astype(np.float64)
        )
        if not self.use_nms:
            return preds, scores, image_ids
        areas = st["areas"].astype(np.float64)
        unknown = ~np.isfinite(areas)
        if unknown.any():
            extent = preds[..., :2].max(1) - preds[..., :2].min(1)
            areas = np.where(unknown, extent[:, 0] * extent[:, 1], areas)
        kept = oks_nms_per_image(
            preds, scores, areas, image_ids, self.sigmas, self.nms_thr, soft=self.soft_nms, max_dets=self.nms_max_dets
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
        opts = {"drop_zero_score": self.drop_zero_score}
        res = evaluate_keypoints(self.gt, results_path, self.sigmas, crowd_thresholds=self.crowd_thresholds, **opts)
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
        return metrics


class PCKhEvaluator(BaseEvaluator):
    """MPII-style PCKh from ground-truth boxes (``instance.head_size`` is the normaliser).

    Keys (for the default ``thrs=(0.5, 0.1)``): ``PCKh@0.5`` and ``PCKh@0.1`` — the MPII total
    (joint-count weighted, joints in ``exclude_joints`` left out); ``PCKh@0.5/all`` — the same
    over every joint; ``PCKh@0.5/mean`` — unweighted mean over joints; ``PCKh@0.5/<joint>`` —
    per-joint accuracy for every joint that has labels. Values are fractions in [0, 1].

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
        missing = [int(i.ann_id) for i in self.instances if i.head_size is None or not i.head_size > 0]
        if missing:
            raise ValueError(
                f"{self._where()}: PCKh needs instance.head_size > 0; ann_ids {missing[:5]} (of {len(missing)}) "
                "lack it. Use an MPII-style reader that fills head_size, or metric 'pck'."
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
        return out


class PCKEvaluator(BaseEvaluator):
    """Bounding-box PCK, AUC and EPE (hand / animal sets, mmpose definitions).

    Keys: ``PCK@<thr>`` for each of ``thrs`` (box = the ground-truth ``bbox``'s longer side),
    ``AUC`` (normalised by ``auc_norm_factor`` pixels, ``auc_num_thrs`` thresholds) and
    ``EPE`` (pixels; ``nan`` without labelled joints).
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
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        self.thrs = tuple(float(t) for t in thrs)
        self.auc_norm_factor = float(auc_norm_factor)
        self.auc_num_thrs = int(auc_num_thrs)

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        st = self._deduplicated()
        gts = self._gather_gt(st["ann_ids"])
        if not gts:
            log.warning("%s: no predictions were accumulated; PCK and AUC are 0", self._where())
        k = self.num_keypoints
        gt_k = np.stack([np.asarray(g.keypoints, np.float64) for g in gts]) if gts else np.zeros((0, k, 3))
        sizes = np.array([float(np.max(np.asarray(g.bbox, np.float64)[2:4])) for g in gts])
        pred, vis = st["preds"][..., :2], gt_k[..., 2] > 0
        out = {f"PCK@{t:g}": bbox_pck(pred, gt_k[..., :2], vis, sizes, t).mean for t in self.thrs}
        out["AUC"] = auc(pred, gt_k[..., :2], vis, self.auc_norm_factor, self.auc_num_thrs)
        out["EPE"] = epe(pred, gt_k[..., :2], vis)
        return out


#: Evaluation-wide options that a caller may pass to every metric; metrics that do not use
#: them ignore them (any other unknown option is an error).
SHARED_OPTIONS = frozenset({"use_nms", "oks_nms_thr", "vis_thr", "soft_nms", "image_ids"})


def _registry() -> dict[str, type[BaseEvaluator]]:
    return {
        "coco": CocoEvaluator,
        "pckh": PCKhEvaluator,
        "pck": PCKEvaluator,
        "cross": CrossSkeletonEvaluator,
    }


def available_metrics() -> list[str]:
    """Metric names accepted by :func:`build_evaluator`."""
    return sorted(_registry())


def build_evaluator(
    metric: str, dataset_name: str, instances: Sequence[Any], skeleton: Any, **opts: Any
) -> BaseEvaluator:
    """Build the evaluator for ``metric`` ("coco" | "pckh" | "pck" | "cross").

    ``opts`` are the keyword arguments of the evaluator class (e.g. ``oks_nms_thr=0.9`` for
    "coco", ``thrs=[0.5, 0.1]`` for "pckh", ``head_name="aic"`` for "cross", where
    ``skeleton`` is the evaluated head's skeleton). Options in :data:`SHARED_OPTIONS` are
    ignored by metrics that do not use them; any other unknown option raises an error listing
    the valid ones.
    """
    reg = _registry()
    if metric not in reg:
        raise ValueError(
            f"unknown evaluation metric '{metric}' for dataset '{dataset_name}'; choose one of {sorted(reg)}"
        )
    cls = reg[metric]
    params = [
        n
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if n not in ("self", "dataset_name", "instances", "skeleton") and p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    unknown = sorted(set(opts) - set(params) - SHARED_OPTIONS)
    if unknown:
        raise ValueError(
            f"evaluation options {unknown} are not valid for metric '{metric}' (dataset '{dataset_name}'); "
            f"valid options: {params}"
        )
    kwargs = {k: v for k, v in opts.items() if k in params}
    if metric == "cross":
        head_name = kwargs.pop("head_name", None) or str(skeleton.name)
        return cls(dataset_name, head_name, instances, skeleton, **kwargs)
    return cls(dataset_name, instances, skeleton, **kwargs)
