"""Training losses."""

from multipose.losses.heatmap import keypoint_mse

__all__ = ["keypoint_mse"]
