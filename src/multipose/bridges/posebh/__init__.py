"""PoseBH (CVPR 2025) inside the training module: keypoint embedding module, prototypes, Sinkhorn assignment,
EMA update, PPC/PPD, prototype heatmaps and cross-type self-supervision (``+bridge=posebh``)."""

from multipose.bridges.posebh.bridge import DEFAULT_SETTINGS, PAPER_WEIGHTS, TERMS, PoseBHBridge

__all__ = ["DEFAULT_SETTINGS", "PAPER_WEIGHTS", "TERMS", "PoseBHBridge"]
