"""Evaluation: COCO keypoint AP, PCKh, PCK/AUC/EPE, NME and cross-skeleton accuracy.

See :func:`build_evaluator` for the per-dataset interface used during validation.
"""

from .coco import (
    COCO_METRIC_NAMES,
    CocoEvalResult,
    build_coco_gt,
    evaluate_keypoints,
    results_to_coco,
    write_results,
)
from .cross_skeleton import CrossSkeletonEvaluator
from .evaluators import (
    BaseEvaluator,
    CocoEvaluator,
    NMEEvaluator,
    PCKEvaluator,
    PCKhEvaluator,
    available_metrics,
    build_evaluator,
    check_options,
)
from .nms import keypoint_oks, oks_iou, oks_nms, oks_nms_per_image, rescore, soft_oks_nms
from .pck import PCKResult, auc, bbox_pck, epe, nme, pckh, torso_sizes
from .protocols import PROTOCOLS, resolve_parts

__all__ = [
    "COCO_METRIC_NAMES",
    "BaseEvaluator",
    "CocoEvalResult",
    "CocoEvaluator",
    "CrossSkeletonEvaluator",
    "NMEEvaluator",
    "PROTOCOLS",
    "PCKEvaluator",
    "PCKResult",
    "PCKhEvaluator",
    "auc",
    "available_metrics",
    "bbox_pck",
    "build_coco_gt",
    "build_evaluator",
    "check_options",
    "epe",
    "evaluate_keypoints",
    "keypoint_oks",
    "nme",
    "oks_iou",
    "oks_nms",
    "oks_nms_per_image",
    "pckh",
    "rescore",
    "resolve_parts",
    "soft_oks_nms",
    "torso_sizes",
    "results_to_coco",
    "write_results",
]
