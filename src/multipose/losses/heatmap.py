"""Target-weighted heatmap MSE (mmpose ``JointsMSELoss(use_target_weight=True)``)."""

from __future__ import annotations

import torch


def keypoint_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(1/K) sum_k mean_{n,h,w} (w_nk * (pred - target))^2``: the mean over batch, keypoints and pixels of the
    target-weighted squared error, exactly mmpose's JointsMSELoss with ``use_target_weight=True``.

    Args:
        pred, target: ``[N, K, h, w]`` heatmaps.
        weight: ``[N, K]`` target weights (0 for unlabelled keypoints and padding).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"heatmap loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ; the head's "
            "keypoint count must equal its skeleton's"
        )
    w = weight[:, :, None, None].to(pred.dtype)
    return ((pred.float() - target.float()) * w).pow(2).mean()
