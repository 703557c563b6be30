"""Cross-type self-supervision (CSS) of PoseBH: pseudo-labels of skeleton ``d`` on images of the other datasets,
fused from the regression head ``H_d`` and the prototype maps ``Ĥ_d`` where both are confident and agree.

Per image and keypoint (released ``KptProtoHead.get_css_loss``): both maps' maxima above ``confidence`` (0.25) and
their integer argmax peaks within ``match_distance`` heatmap pixels (2.1 at 64x48, scaled with the heatmap size);
then both maps are **detached**, decoded with argmax + DARK-UDP (sub-pixel ``a``, ``b`` with peak values ``v_a``,
``v_b``), fused to ``(v_a a + v_b b) / max(v_a + v_b, 1e-4)`` and drawn as a UDP Gaussian (sigma 2) with weight
``min(v_a, v_b)``. Targets and weights are constants; gradients reach the heads and the embeddings only through
the predictions.

``faithful=True`` reproduces the released code's two slips: the match distance ``sqrt((ax-bx)^2 + (bx-by)^2)``
(the prototype peak's x against its own y) and the fusion ``(v_a a + v_b v_b) / (v_a + v_b)`` (the prototype
branch's *confidence* in place of its coordinates, which pulls the pseudo-label toward the origin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from multipose.data.codecs import UDPHeatmap

__all__ = ["COUNT_KEYS", "REFERENCE_HEATMAP", "match_distance", "pseudo_labels", "pseudo_targets"]

#: keys of the ``counts`` that :func:`pseudo_labels` adds to: (image, keypoint) candidates, those whose two maxima
#: both pass the confidence test, and those that also pass the match test (= got a pseudo-label)
COUNT_KEYS = ("candidates", "confident", "kept")

#: heatmap size (H, W) at which the released ``css_match_dist`` (2.1 px) was set
REFERENCE_HEATMAP = (64, 48)


def match_distance(
    distance: float, heatmap_size: Sequence[int], reference: Sequence[int] = REFERENCE_HEATMAP
) -> float:
    """``distance`` (heatmap px at ``reference``) scaled to ``heatmap_size`` by the geometric mean of the ratios."""
    (h, w), (rh, rw) = heatmap_size, reference
    return float(distance) * math.sqrt((h / rh) * (w / rw))


def _peaks(maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(value, x, y)`` of the integer argmax of ``maps [N, K, h, w]``, each ``[N, K]``."""
    n, k, h, w = maps.shape
    value, idx = maps.reshape(n, k, h * w).max(dim=2)
    return value, (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()


@torch.no_grad()
def pseudo_labels(
    regression: Tensor,
    prototype: Tensor,
    confidence: float = 0.25,
    distance: float = 2.1,
    faithful: bool = False,
    codec: UDPHeatmap | None = None,
    counts: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fused pseudo keypoints of one skeleton on images it has no labels for.

    Args:
        regression, prototype: ``[N, K, h, w]`` heatmaps of the head and of the prototype branch (detached here).
        confidence: both maxima must exceed it. distance: peak-match radius in heatmap px (already scaled).
        codec: a UDP codec on the heatmap grid (``input_size == heatmap_size``); built when omitted.
        counts: when given, :data:`COUNT_KEYS` are added to it (how far the candidates got through the tests).

    Returns ``(coords [N, K, 2], weight [N, K])`` in heatmap pixels; ``weight = min(v_a, v_b)`` where the keypoint
    passed both tests, else 0.
    """
    a, b = regression.detach().float(), prototype.detach().float()
    if a.shape != b.shape:
        raise ValueError(f"CSS: head maps {tuple(a.shape)} and prototype maps {tuple(b.shape)} differ")
    n, k, h, w = a.shape
    va, ax, ay = _peaks(a)
    vb, bx, by = _peaks(b)
    second = (bx - by) if faithful else (ay - by)
    matched = torch.sqrt((ax - bx) ** 2 + second**2) <= distance
    confident = (va > confidence) & (vb > confidence)
    keep = (confident & matched).cpu().numpy()
    if counts is not None:
        for key, value in zip(COUNT_KEYS, (n * k, int(confident.sum()), int(keep.sum()))):
            counts[key] = counts.get(key, 0) + value
    if codec is None:
        codec = UDPHeatmap((h, w), (h, w))
    coords = np.zeros((n, k, 2), np.float32)
    weight = np.zeros((n, k), np.float32)
    if not keep.any():
        return coords, weight
    ca, sa = codec.decode(a.cpu())
    cb, sb = codec.decode(b.cpu())
    denom = np.maximum(sa + sb, 1e-4)[..., None]
    other = np.repeat(sb[..., None], 2, axis=-1) if faithful else cb
    fused = (sa[..., None] * ca + sb[..., None] * other) / denom
    coords[keep] = fused[keep]
    weight[keep] = np.minimum(sa, sb)[keep]
    return coords, weight


def pseudo_targets(
    coords: np.ndarray, weight: np.ndarray, codec: UDPHeatmap
) -> tuple[np.ndarray, np.ndarray]:
    """UDP Gaussian targets ``[N, K, h, w]`` at ``coords`` (heatmap px, the codec's grid) and their weights
    ``[N, K]`` (``weight`` times the codec's in-window flag)."""
    n, k = weight.shape
    h, w = codec.heatmap_size
    maps = np.zeros((n, k, h, w), np.float32)
    out_w = np.zeros((n, k), np.float32)
    for i in range(n):
        kpts = np.concatenate([coords[i], (weight[i] > 0)[:, None].astype(np.float32)], axis=1)
        maps[i], inside = codec.encode(kpts)
        out_w[i] = weight[i] * inside
    return maps, out_w
