"""Skeletons are data: one YAML file per skeleton, loaded and validated by :mod:`.registry`."""

from .registry import (
    Skeleton,
    SkeletonError,
    UnifiedLayout,
    Vocabulary,
    active_vocabulary,
    available_skeletons,
    correspondence,
    get_skeleton,
    load_skeleton_dirs,
    load_skeleton_file,
    load_vocabulary,
    register_skeleton,
    unified_layout,
)

__all__ = [
    "Skeleton",
    "SkeletonError",
    "UnifiedLayout",
    "Vocabulary",
    "active_vocabulary",
    "available_skeletons",
    "correspondence",
    "get_skeleton",
    "load_skeleton_dirs",
    "load_skeleton_file",
    "load_vocabulary",
    "register_skeleton",
    "unified_layout",
]
