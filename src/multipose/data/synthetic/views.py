"""Skeleton views: each dataset labels a different subset of the hidden landmarks, in its own order.

Keypoint names and orders come from the skeleton registry (``multipose.skeletons``); this module only
says which hidden landmark each named keypoint *is* for the synthetic world. Datasets deliberately
disagree on the definition of the "same" joint, as real ones do:

* hips — COCO / COCO-WholeBody label the leg root (``*_hip_joint``), MPII slightly higher
  (``*_hip_mid``), AIC clearly higher and wider on the torso (``*_hip_high``);
* head top — MPII labels the crown (``head_top``), AIC a point lower on the skull (``head_top_low``);
* neck — AIC labels the neck base between the shoulders, MPII the upper neck at the chin and the
  thorax below the neck base.

Visibility (COCO convention): ``v = 0`` outside the image (coordinates zeroed, like COCO unlabelled
points); ``v = 1`` inside but hidden — by another figure, by another part of the same figure, or by
the figure's own 3D geometry (eyes of a figure seen from the back, the far eye of an animal in
profile); ``v = 2`` seen. A landmark is *seen* when the part map shows one of its owner parts within
one pixel of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from multipose.data.synthetic.figures import Figure
from multipose.data.synthetic.render import PARTS_PER_FIGURE, part_codes

__all__ = ["SkeletonView", "get_view", "HUMAN_SKELETONS", "ANIMAL_SKELETONS", "landmark_table", "pick"]

HUMAN_SKELETONS = ("coco", "aic", "mpii", "coco_wholebody")
ANIMAL_SKELETONS = ("ap10k",)

# Per-skeleton definitions that differ from the plain name translation (see the module docstring).
_OVERRIDES: dict[str, dict[str, str]] = {
    "coco": {"left_hip": "l_hip_joint", "right_hip": "r_hip_joint"},
    "coco_wholebody": {"left_hip": "l_hip_joint", "right_hip": "r_hip_joint"},
    "aic": {
        "left_hip": "l_hip_high",
        "right_hip": "r_hip_high",
        "head_top": "head_top_low",
        "neck": "neck_base",
    },
    "mpii": {"left_hip": "l_hip_mid", "right_hip": "r_hip_mid"},
    "ap10k": {"neck": "neck_root", "root_of_tail": "tail_root"},
}


def _translate(name: str) -> str:
    """Registry keypoint name -> landmark name: ``left_``/``right_`` -> ``l_``/``r_``, ``face-i`` -> ``face_i``."""
    n = name.replace("-", "_")
    if n.startswith("left_"):
        return "l_" + n[5:]
    if n.startswith("right_"):
        return "r_" + n[6:]
    return n


@dataclass(frozen=True)
class SkeletonView:
    """Which landmark each keypoint of ``skeleton`` is, in the skeleton's official order."""

    skeleton: str
    keypoints: tuple[str, ...]  # registry names
    landmarks: tuple[str, ...]  # hidden landmark names
    kind: str  # "human" | "quadruped"

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)


@cache
def _known_landmarks(kind: str) -> frozenset[str]:
    from multipose.data.synthetic.figures import AnimalStyle, HumanStyle, sample_human, sample_quadruped

    rng = np.random.default_rng(0)
    if kind == "human":
        grey = (128.0, 128.0, 128.0)
        fig = sample_human(rng, HumanStyle(grey, grey, grey, grey, grey, True))
    else:
        fig = sample_quadruped(rng, AnimalStyle((128.0,) * 3, (160.0,) * 3), "dog")
    return frozenset(fig.landmarks)


@cache
def get_view(skeleton: str) -> SkeletonView:
    """The synthetic world's view for a registered skeleton (``coco``, ``aic``, ``mpii``,
    ``coco_wholebody``, ``ap10k``). Raises ``ValueError`` for other skeletons or unmappable names."""
    from multipose.skeletons import get_skeleton

    if skeleton in HUMAN_SKELETONS:
        kind = "human"
    elif skeleton in ANIMAL_SKELETONS:
        kind = "quadruped"
    else:
        raise ValueError(
            f"the synthetic world has no view for skeleton {skeleton!r}; "
            f"available: {sorted(HUMAN_SKELETONS + ANIMAL_SKELETONS)}"
        )
    names = tuple(get_skeleton(skeleton).keypoints)
    over = _OVERRIDES.get(skeleton, {})
    known = _known_landmarks(kind)
    landmarks = []
    for n in names:
        lm = over.get(n, _translate(n))
        if lm not in known:
            raise ValueError(
                f"skeleton {skeleton!r}: keypoint {n!r} maps to landmark {lm!r}, which the synthetic "
                f"{kind} figure does not have; add an override in multipose/data/synthetic/views.py"
            )
        landmarks.append(lm)
    return SkeletonView(skeleton, names, tuple(landmarks), kind)


def landmark_table(fig: Figure, fig_index: int, lab: np.ndarray) -> dict[str, tuple[float, float, int]]:
    """Annotate every landmark of a placed figure: name -> ``(x, y, v)`` (see the module docstring).

    ``lab`` is the final part map of the image (``uint16 [H, W]``) in which the figure was drawn with
    index ``fig_index``.
    """
    h, w = lab.shape
    codes = part_codes(fig)
    base = fig_index * PARTS_PER_FIGURE + 1
    names = list(fig.landmarks)
    pts = np.stack([fig.landmarks[n] for n in names])
    idx = np.round(pts).astype(np.int64)
    inside = (idx[:, 0] >= 0) & (idx[:, 0] < w) & (idx[:, 1] >= 0) & (idx[:, 1] < h)
    # owner part values per landmark, padded with -1 (never a part-map value)
    own = np.full((len(names), max(len(o) for o in fig.owners.values())), -1, dtype=np.int64)
    for i, n in enumerate(names):
        vals = [base + codes[o] for o in fig.owners[n] if o in codes]
        own[i, : len(vals)] = vals
    # 3x3 window of the part map around each landmark (clamped at the border)
    offs = np.array([-1, 0, 1])
    xs = np.clip(idx[:, 0, None, None] + offs[None, None, :], 0, w - 1)
    ys = np.clip(idx[:, 1, None, None] + offs[None, :, None], 0, h - 1)
    win = lab[ys, xs].reshape(len(names), 9).astype(np.int64)
    seen = (win[:, :, None] == own[:, None, :]).any(axis=(1, 2))
    hidden = np.array([n in fig.self_hidden for n in names], dtype=bool)
    vis = np.where(inside, np.where(seen & ~hidden, 2, 1), 0)
    out: dict[str, tuple[float, float, int]] = {}
    for i, n in enumerate(names):
        out[n] = (float(pts[i, 0]), float(pts[i, 1]), int(vis[i])) if vis[i] else (0.0, 0.0, 0)
    return out


def pick(table: dict[str, tuple[float, float, int]], view: SkeletonView) -> np.ndarray:
    """``float32 [K, 3]`` keypoints of ``view`` from a landmark table."""
    return np.array([table[lm] for lm in view.landmarks], dtype=np.float32).reshape(-1, 3)
