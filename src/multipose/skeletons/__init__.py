"""Skeletons are data: one YAML file per skeleton, validated by :mod:`.parse` and looked up by :mod:`.registry`.

Modules: :mod:`.yaml_files` (file locations, YAML reading, :class:`SkeletonError`), :mod:`.vocabulary` (the
shared semantic tags), :mod:`.skeleton` (the :class:`Skeleton` record), :mod:`.parse` (one file -> a
skeleton), :mod:`.registry` (built-in and user skeletons by name), :mod:`.layout` (several skeletons side by
side: :func:`unified_layout`, :func:`correspondence`).
"""

from .layout import UnifiedLayout, correspondence, unified_layout
from .registry import (
    active_vocabulary,
    available_skeletons,
    get_skeleton,
    load_skeleton_dirs,
    load_skeleton_file,
    register_skeleton,
)
from .skeleton import Skeleton
from .vocabulary import Vocabulary, load_vocabulary
from .yaml_files import SkeletonError

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
