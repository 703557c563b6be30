"""Cross-skeleton accuracy and cross-head consistency on the synthetic world.

In the synthetic world every figure carries hidden ground truth for every skeleton
(``instance.extra_gt[skeleton_name] -> [K_s, 3]``). :class:`CrossSkeletonEvaluator` scores the
head of skeleton ``S`` on the validation images of another dataset ``A`` against that hidden
ground truth, with ``S``'s sigmas:

* ``cross/<head>/AP``, ``AP50``, ``AP75``, ``AR`` — COCO keypoint AP over an in-memory COCO
  ground truth built from ``extra_gt[S]`` (instance boxes and areas of ``A``), with the same
  re-scoring as the COCO evaluator; OKS-NMS is off by default because the crops come from
  ground-truth boxes, one prediction per figure.
* ``cross/<head>/OKS`` — mean one-to-one OKS between each prediction and its figure's hidden
  ground truth (figures without a labelled joint are left out).
* ``cross/<head>/PCK@0.1`` — bounding-box PCK (longer side of the instance box, mmpose
  definition: unweighted mean over joints).

Label-free agreement between heads (cross-head disagreement, CHD) lives in :mod:`.consistency`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import BaseEvaluator, skeleton_sigmas
from .coco import build_coco_gt, evaluate_keypoints, results_to_coco, write_results
from .nms import keypoint_oks, select_poses
from .pck import bbox_pck

__all__ = ["CrossSkeletonEvaluator"]

log = logging.getLogger(__name__)


class CrossSkeletonEvaluator(BaseEvaluator):
    """Accuracy of the head of ``skeleton`` on images of ``dataset_name`` (hidden ground truth).

    Args:
        dataset_name: dataset whose validation images are evaluated (``A``).
        head_name: name of the evaluated head, used in the metric keys (``cross/<head_name>/AP``).
        instances: ground-truth records of ``A``'s validation split; those without
            ``extra_gt[skeleton.name]`` are skipped and the count is logged.
        skeleton: the skeleton of the evaluated head (``S``); its ``name`` selects ``extra_gt``.
        use_nms, oks_nms_thr, vis_thr: as in :class:`~multipose.evaluation.evaluators.CocoEvaluator`.
        pck_thr: threshold of the bounding-box PCK.
    """

    metric = "cross"

    def __init__(
        self,
        dataset_name: str,
        head_name: str,
        instances: Sequence[Any],
        skeleton: Any,
        use_nms: bool = False,
        oks_nms_thr: float = 0.9,
        vis_thr: float = 0.2,
        pck_thr: float = 0.1,
    ) -> None:
        self.head_name = str(head_name)
        super().__init__(dataset_name, instances, skeleton)
        self.skeleton_name = str(skeleton.name)
        self.sigmas = skeleton_sigmas(skeleton)
        self.use_nms, self.nms_thr, self.vis_thr, self.pck_thr = use_nms, oks_nms_thr, vis_thr, pck_thr
        self.last_summary = ""
        self._all = self._instances_by_ann_id()
        self._with_gt: dict[int, Any] = {}
        for a, inst in self._all.items():
            extra = getattr(inst, "extra_gt", None) or {}
            if self.skeleton_name not in extra:
                continue
            kp = np.asarray(extra[self.skeleton_name], dtype=np.float64)
            if kp.shape != (self.num_keypoints, 3):
                raise ValueError(
                    f"{self._where()}: instance ann_id={a} has extra_gt['{self.skeleton_name}'] of shape "
                    f"{kp.shape}, expected ({self.num_keypoints}, 3); regenerate the synthetic annotations."
                )
            self._with_gt[a] = inst
        skipped = len(self._all) - len(self._with_gt)
        if skipped:
            log.info(
                "%s: %d of %d instances have no hidden ground truth for skeleton '%s' and are skipped",
                self._where(),
                skipped,
                len(self._all),
                self.skeleton_name,
            )
        self.gt = (
            build_coco_gt(
                self._with_gt.values(),
                skeleton.keypoints,
                category_name=self.skeleton_name,
                keypoints_fn=lambda inst: inst.extra_gt[self.skeleton_name],
            )
            if self._with_gt
            else None
        )

    def _where(self) -> str:
        return (
            f"CrossSkeletonEvaluator(dataset='{self.dataset_name}', head='{getattr(self, 'head_name', '?')}')"
        )

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        if self.gt is None:
            log.warning(
                "%s: no instance has extra_gt['%s']; no cross-skeleton metrics",
                self._where(),
                self.skeleton_name,
            )
            return {}
        st = self._deduplicated()
        unknown = [int(a) for a in st["ann_ids"] if int(a) not in self._all]
        if unknown:
            raise ValueError(
                f"{self._where()}: predictions for ann_ids {unknown[:5]} have no instance in the validation set; "
                "forward batch['ann_id'] of the same split to update()."
            )
        has = np.array([int(a) in self._with_gt for a in st["ann_ids"]], dtype=bool)
        if not has.all():
            log.info(
                "%s: %d predictions skipped (figure without hidden ground truth)",
                self._where(),
                int((~has).sum()),
            )
        st = {k: v[has] for k, v in st.items()}
        prefix = f"cross/{self.head_name}/"
        preds = st["preds"].astype(np.float64)
        insts = [self._with_gt[int(a)] for a in st["ann_ids"]]

        areas = np.array([float(i.area) for i in insts])
        sel, scores = select_poses(
            preds,
            st["bbox_scores"],
            areas,
            st["image_ids"],
            self.sigmas,
            self.vis_thr,
            self.nms_thr,
            use_nms=self.use_nms,
        )
        results = results_to_coco(st["image_ids"][sel], preds[sel], scores[sel])
        if out_dir is not None:
            path = write_results(
                results, Path(out_dir) / f"results_{self.dataset_name}_cross_{self.head_name}.json"
            )
            res = evaluate_keypoints(self.gt, path, self.sigmas)
        else:
            res = evaluate_keypoints(self.gt, results, self.sigmas)
        self.last_summary = res.summary
        out = {prefix + k: res.metrics[k] for k in ("AP", "AP50", "AP75", "AR")}

        if insts:
            gt_k = np.stack([np.asarray(i.extra_gt[self.skeleton_name], np.float64) for i in insts])
            oks = keypoint_oks(preds, gt_k, np.array([float(i.area) for i in insts]), self.sigmas)
            out[prefix + "OKS"] = float(np.nanmean(oks)) if np.isfinite(oks).any() else 0.0
            sizes = np.array([float(np.max(np.asarray(i.bbox, np.float64)[2:4])) for i in insts])
            out[prefix + f"PCK@{self.pck_thr:g}"] = bbox_pck(
                preds[..., :2], gt_k[..., :2], gt_k[..., 2] > 0, sizes, self.pck_thr
            ).mean
        else:
            out[prefix + "OKS"] = 0.0
            out[prefix + f"PCK@{self.pck_thr:g}"] = 0.0
        return out
