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

from .coco import build_coco_gt, evaluate_keypoints, results_to_coco, write_results
from .nms import oks_nms_per_image, rescore
from .pck import auc, bbox_pck, epe, pckh

__all__ = [
    "BaseEvaluator",
    "CocoEvaluator",
    "PCKEvaluator",
    "PCKhEvaluator",
    "available_metrics",
    "build_evaluator",
]

log = logging.getLogger(__name__)

_STATE_KEYS = ("preds", "image_ids", "ann_ids", "bbox_scores", "areas", "sample_ids")


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def skeleton_sigmas(skeleton: Any) -> np.ndarray:
    """``[K]`` float64 sigmas of a skeleton, checked against its keypoint count."""
    names = tuple(skeleton.keypoints)
    sigmas = np.asarray(skeleton.sigmas, dtype=np.float64).reshape(-1)
    if sigmas.shape[0] != len(names):
        raise ValueError(
            f"skeleton '{getattr(skeleton, 'name', '?')}' has {len(names)} keypoints but {sigmas.shape[0]} "
            "sigmas; fix `sigmas` in its YAML file."
        )
    return sigmas


class BaseEvaluator:
    """Accumulates predictions; subclasses implement :meth:`compute`.

    Args:
        dataset_name: name of the dataset in the mix (used in file names and messages).
        instances: ground-truth records of the validation split.
        skeleton: the skeleton the predictions are in (``keypoints``, ``sigmas``, ``name``).
    """

    metric: str = ""

    def __init__(self, dataset_name: str, instances: Sequence[Any], skeleton: Any) -> None:
        self.dataset_name = dataset_name
        self.instances = list(instances)
        self.skeleton = skeleton
        self.num_keypoints = len(tuple(skeleton.keypoints))
        self._chunks: list[dict[str, np.ndarray]] = []

    # ------------------------------------------------------------------ accumulation
    def reset(self) -> None:
        """Forget every accumulated prediction."""
        self._chunks = []

    def update(
        self,
        preds: Any,
        image_ids: Any,
        ann_ids: Any = None,
        bbox_scores: Any = None,
        areas: Any = None,
        sample_ids: Any = None,
    ) -> None:
        """Add a batch of predictions.

        Args:
            preds: ``[B, K, 3]`` ``(x, y, score)`` in image pixels, ``K`` = this skeleton's.
            image_ids: ``[B]``.
            ann_ids: ``[B]`` ground-truth annotation ids (``-1`` for detection boxes).
            bbox_scores: ``[B]`` box scores (default 1.0, i.e. ground-truth boxes).
            areas: ``[B]`` instance areas in pixels² used by OKS-NMS (default: unknown).
            sample_ids: ``[B]`` optional index of the sample in the validation set, the most
                reliable key for dropping padded duplicates.
        """
        p = _to_numpy(preds, np.float32)
        if p.ndim != 3 or p.shape[-1] != 3:
            raise ValueError(f"{self._where()}: preds must be [B, K, 3] (x, y, score), got shape {p.shape}")
        if p.shape[1] != self.num_keypoints:
            raise ValueError(
                f"{self._where()}: preds have K={p.shape[1]} keypoints but skeleton "
                f"'{getattr(self.skeleton, 'name', '?')}' has {self.num_keypoints}; slice the padded "
                "prediction to the skeleton's num_keypoints before update()."
            )
        b = p.shape[0]

        def vec(x: Any, name: str, dtype: Any, default: float) -> np.ndarray:
            if x is None:
                return np.full(b, default, dtype=dtype)
            v = _to_numpy(x, dtype).reshape(-1)
            if v.shape[0] != b:
                raise ValueError(
                    f"{self._where()}: {name} has {v.shape[0]} entries for a batch of {b} predictions"
                )
            return v

        self._chunks.append(
            {
                "preds": p,
                "image_ids": vec(image_ids, "image_ids", np.int64, -1),
                "ann_ids": vec(ann_ids, "ann_ids", np.int64, -1),
                "bbox_scores": vec(bbox_scores, "bbox_scores", np.float32, 1.0),
                "areas": vec(areas, "areas", np.float32, np.nan),
                "sample_ids": vec(sample_ids, "sample_ids", np.int64, -1),
            }
        )

    def state(self) -> dict[str, np.ndarray]:
        """Accumulated predictions as plain numpy arrays (picklable, for gathering)."""
        if not self._chunks:
            return {
                "preds": np.zeros((0, self.num_keypoints, 3), np.float32),
                **{
                    k: np.zeros(0, np.float32 if k in ("bbox_scores", "areas") else np.int64)
                    for k in _STATE_KEYS[1:]
                },
            }
        return {k: np.concatenate([c[k] for c in self._chunks]) for k in _STATE_KEYS}

    def merge(self, states: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Replace the accumulated predictions by the concatenation of ``states`` (in order).

        ``states`` are :meth:`state` outputs of every rank, this rank's own included (the
        result of an all-gather); repeated samples are dropped later by :meth:`compute`.
        """
        chunks = []
        for i, st in enumerate(states):
            missing = [k for k in _STATE_KEYS if k not in st]
            if missing:
                raise ValueError(f"{self._where()}: state {i} lacks {missing}; pass what state() returned")
            chunks.append({k: np.asarray(st[k]) for k in _STATE_KEYS})
        self._chunks = chunks

    def __len__(self) -> int:
        return sum(c["preds"].shape[0] for c in self._chunks)

    def _deduplicated(self) -> dict[str, np.ndarray]:
        st = self.state()
        n = st["preds"].shape[0]
        seen: set[tuple] = set()
        keep = np.zeros(n, dtype=bool)
        for i in range(n):
            if st["sample_ids"][i] >= 0:
                key: tuple = ("sample", int(st["sample_ids"][i]))
            elif st["ann_ids"][i] >= 0:
                key = ("ann", int(st["ann_ids"][i]))
            else:
                key = ("det", int(st["image_ids"][i]), float(st["areas"][i]), float(st["bbox_scores"][i]))
            if key not in seen:
                seen.add(key)
                keep[i] = True
        if not keep.all():
            log.info(
                "%s: dropped %d repeated predictions (distributed padding)", self._where(), int((~keep).sum())
            )
        return {k: v[keep] for k, v in st.items()}

    def _where(self) -> str:
        return f"{type(self).__name__}(dataset='{self.dataset_name}')"

    def _instances_by_ann_id(self) -> dict[int, Any]:
        table: dict[int, Any] = {}
        for inst in self.instances:
            a = int(inst.ann_id)
            if a < 0:
                raise ValueError(
                    f"{self._where()}: instance of image {inst.image_id} has ann_id -1 (a detection box); "
                    f"'{self.metric}' needs ground-truth instances with their annotation ids."
                )
            if a in table:
                raise ValueError(
                    f"{self._where()}: ann_id {a} appears twice in the ground truth; ids must be unique"
                )
            table[a] = inst
        return table

    def _gather_gt(self, ann_ids: np.ndarray) -> list[Any]:
        table = self._instances_by_ann_id()
        missing = [int(a) for a in ann_ids if int(a) not in table]
        if missing:
            raise ValueError(
                f"{self._where()}: predictions for ann_ids {missing[:5]} (of {len(missing)}) have no ground-truth "
                "instance; pass the same split's instances and forward batch['ann_id'] to update()."
            )
        return [table[int(a)] for a in ann_ids]

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


class CocoEvaluator(BaseEvaluator):
    """COCO keypoint AP with the top-down protocol of ViTPose/mmpose.

    Instance score = box score × mean keypoint score above ``vis_thr`` (:func:`rescore`), then
    per-image OKS-NMS at ``oks_nms_thr`` (skeleton sigmas), then pycocotools ``COCOeval`` with the
    skeleton's sigmas. The results file ``<out_dir>/results_<dataset>.json`` is written in the
    standard COCO keypoint results format. OKS-NMS needs instance areas: pass ``areas`` to
    :meth:`update` (the batch's ``area``); where they are missing the area of the predicted
    keypoints' bounding box is used.

    Args:
        use_nms: apply OKS-NMS (default on; with ground-truth boxes it rarely removes anything).
        oks_nms_thr: OKS threshold above which the lower-scored pose is suppressed.
        vis_thr: keypoint-score threshold of the re-scoring.
        use_rescore: if False the box score is the instance score.
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
    ) -> None:
        super().__init__(dataset_name, instances, skeleton)
        self.sigmas = skeleton_sigmas(skeleton)
        self.use_nms = use_nms
        self.nms_thr = oks_nms_thr
        self.vis_thr = vis_thr
        self.use_rescore = use_rescore
        self.gt = build_coco_gt(
            self.instances, skeleton.keypoints, category_name=str(getattr(skeleton, "name", "person"))
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
        kept = oks_nms_per_image(preds, scores, areas, image_ids, self.sigmas, self.nms_thr)
        if kept.size < preds.shape[0]:
            log.info(
                "%s: OKS-NMS removed %d of %d poses",
                self._where(),
                preds.shape[0] - kept.size,
                preds.shape[0],
            )
        return preds[kept], scores[kept], image_ids[kept]

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        st = self._deduplicated()
        kpts, scores, image_ids = self.select(st)
        results = results_to_coco(image_ids, kpts, scores)
        name = f"results_{self.dataset_name}.json"
        if out_dir is None:
            with tempfile.TemporaryDirectory() as tmp:
                res = evaluate_keypoints(self.gt, write_results(results, Path(tmp) / name), self.sigmas)
            self.last_results_path = None
        else:
            self.last_results_path = write_results(results, Path(out_dir) / name)
            res = evaluate_keypoints(self.gt, self.last_results_path, self.sigmas)
        self.last_summary = res.summary
        log.debug("%s COCO keypoint evaluation:\n%s", self._where(), res.summary)
        return res.metrics


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
SHARED_OPTIONS = frozenset({"use_nms", "oks_nms_thr", "vis_thr"})


def _registry() -> dict[str, type[BaseEvaluator]]:
    from .cross_skeleton import CrossSkeletonEvaluator

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
