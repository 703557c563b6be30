"""Several skeletons side by side: the concatenated joint axis of a mix (:func:`unified_layout`) and the
keypoints two skeletons share (:func:`correspondence`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from multipose.skeletons.registry import active_vocabulary, get_skeleton
from multipose.skeletons.skeleton import Skeleton
from multipose.skeletons.yaml_files import SkeletonError

__all__ = ["UnifiedLayout", "correspondence", "unified_layout"]


@dataclass(frozen=True)
class UnifiedLayout:
    """Concatenation of several skeletons into one joint axis of length ``total``.

    ``offsets[key]`` is where entry ``key``'s keypoints start; ``sizes[key]`` their count;
    ``skeletons[key]`` the skeleton name of that entry. Keys keep the order they were given in.
    """

    offsets: dict[str, int]
    total: int
    sizes: dict[str, int] = field(default_factory=dict)
    skeletons: dict[str, str] = field(default_factory=dict)

    def slice(self, key: str) -> slice:
        """The joint-axis slice of entry ``key``."""
        if key not in self.offsets:
            raise KeyError(f"'{key}' is not part of this layout; entries: {', '.join(self.offsets)}")
        return slice(self.offsets[key], self.offsets[key] + self.sizes[key])


def unified_layout(skeleton_names: Sequence[str] | Mapping[str, str]) -> UnifiedLayout:
    """Offsets of each skeleton in the concatenated joint axis, in the given order.

    ``skeleton_names`` is either a sequence of skeleton names/aliases (each used once, e.g.
    ``["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]`` -> total 214), or a mapping
    ``{entry_name: skeleton_name}`` when several entries share a skeleton (e.g. two AP-10K-style sets).
    """
    if isinstance(skeleton_names, Mapping):
        items = [(str(k), v) for k, v in skeleton_names.items()]
    else:
        if isinstance(skeleton_names, str):
            raise TypeError("unified_layout expects a list of skeleton names, not a single string")
        items = [(str(n), n) for n in skeleton_names]
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise SkeletonError(
                    f"skeleton '{key}' appears twice in {list(skeleton_names)}; pass a mapping "
                    "{entry_name: skeleton_name} (e.g. {'ap10k': 'ap10k', 'apt36k': 'ap10k'}) so each entry has its own key"
                )
            seen.add(key)
    offsets: dict[str, int] = {}
    sizes: dict[str, int] = {}
    skels: dict[str, str] = {}
    total = 0
    for key, skel_name in items:
        skel = get_skeleton(skel_name)
        offsets[key] = total
        sizes[key] = skel.num_keypoints
        skels[key] = skel.name
        total += skel.num_keypoints
    return UnifiedLayout(offsets=offsets, total=total, sizes=sizes, skeletons=skels)


def correspondence(
    src: str | Skeleton, dst: str | Skeleton, safe_only: bool = False
) -> list[tuple[int, int]]:
    """Pairs ``(i_src, i_dst)`` of keypoints with the same semantic tag, sorted by ``i_src``.

    With ``safe_only=True`` tags marked ``vote: approx`` in the vocabulary (shoulders, hips, head top)
    are left out.
    """
    a, b = get_skeleton(src), get_skeleton(dst)
    vocab = active_vocabulary()
    dst_index = {t: j for j, t in enumerate(b.semantic)}
    pairs = []
    for i, tag in enumerate(a.semantic):
        j = dst_index.get(tag)
        if j is None or (safe_only and vocab.vote.get(tag) == "approx"):
            continue
        pairs.append((i, j))
    return pairs
