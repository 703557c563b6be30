"""Skeleton bridging: ways to combine or reconcile the predictions of heads with different skeletons.

``voting`` — MDPN multi-branch voting at test time (pure functions over heatmaps or decoded coordinates).
"""

from multipose.bridges.voting import METHODS, compatible_heads, vote, vote_coords, vote_heatmaps, vote_sources

__all__ = ["METHODS", "compatible_heads", "vote", "vote_coords", "vote_heatmaps", "vote_sources"]
