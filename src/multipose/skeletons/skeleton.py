"""The :class:`Skeleton` record: a keypoint layout with its flip partners, links, OKS sigmas and half-body
groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multipose.skeletons.yaml_files import SkeletonError

__all__ = ["Skeleton"]


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A keypoint layout. Indices refer to ``keypoints`` (the dataset's official order).

    ``sigmas`` and ``joint_weights`` are read-only float32 arrays of length ``num_keypoints``;
    ``flip_indices[i]`` is the index of keypoint i's left/right partner (i itself for central points).
    """

    name: str
    keypoints: tuple[str, ...]
    semantic: tuple[str, ...]
    flip_indices: tuple[int, ...]
    links: tuple[tuple[int, int], ...]
    sigmas: np.ndarray
    joint_weights: np.ndarray
    upper_body: tuple[int, ...]
    lower_body: tuple[int, ...]
    aliases: tuple[str, ...] = ()
    source: str = ""
    description: str = ""

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Left/right pairs ``(i, j)`` with ``i < j``."""
        return tuple((i, j) for i, j in enumerate(self.flip_indices) if i < j)

    def index(self, keypoint: str) -> int:
        """Index of a keypoint by name (error lists the valid names)."""
        try:
            return self.keypoints.index(keypoint)
        except ValueError:
            raise SkeletonError(
                f"skeleton '{self.name}' has no keypoint '{keypoint}'; keypoints: {', '.join(self.keypoints)}"
            ) from None

    def find_semantic(self, tag: str) -> int | None:
        """Index of the keypoint carrying semantic ``tag``, or None."""
        return self.semantic.index(tag) if tag in self.semantic else None

    def __repr__(self) -> str:
        return f"Skeleton(name={self.name!r}, num_keypoints={self.num_keypoints}, source={self.source!r})"
