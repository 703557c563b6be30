"""MDPN multi-branch voting at test time (Guo et al., ECCV'18 workshops, sec. 3.2): combine the predictions of
several heads (one per dataset skeleton) into the keypoints of a *target* skeleton. Pure functions, no Lightning.

Methods (the paper's "method A" and "method B"):

* ``fill`` — the *primary* head's output (by default the target's own head), with the target joints it lacks
  taken from the first other head that has the same joint. The paper's best combination of this kind is "the
  COCO branch with the head position from the MPII branch" for the PoseTrack skeleton.
* ``average`` — ``fill``, and every target joint that other heads also predict is the mean over all of them
  ("averaging the heatmaps from common keypoints from all branches"). Heatmaps are averaged when the heads share
  the target's codec and heatmap size (:func:`vote_heatmaps`, then decode once), otherwise the decoded image
  coordinates are (:func:`vote_coords`, score-weighted by default).

Correspondence comes from the skeletons' semantic tags (:func:`multipose.skeletons.correspondence`): only
*exact* tag matches count. Averaging additionally skips tags that the vocabulary marks ``vote: approx`` (COCO,
MPII and AIC hips, shoulders and head tops are annotated at systematically different places): averaging two
different definitions moves the result away from both, which ``tests/test_voting.py`` measures on the synthetic
world's hidden ground truth. ``fill`` may copy an ``approx`` joint, because the alternative is no joint at all.
Every target joint with a single source is a bit-identical copy of that head's channel; a target joint no head
predicts is zero (heatmaps) or ``(0, 0, 0)`` (coordinates), i.e. a zero score.

Voting commutes with flip-back: flip-averaging every head first (``codec.flip_back`` with each skeleton's
flip indices) and voting afterwards gives the same heatmaps as voting the flipped and unflipped outputs
separately, because corresponding tags have corresponding mirror tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["METHODS", "compatible_heads", "vote", "vote_coords", "vote_heatmaps", "vote_sources"]

METHODS = ("fill", "average")


def _skeletons(skeletons: Mapping[str, Any]) -> dict[str, Any]:
    from multipose.skeletons import get_skeleton

    return {name: get_skeleton(s) for name, s in skeletons.items()}


def vote_sources(
    target: str,
    heads: Sequence[str],
    skeletons: Mapping[str, Any],
    method: str,
    primary: str | None = None,
    safe_only: bool = True,
) -> list[list[tuple[str, int]]]:
    """For each keypoint of ``target``'s skeleton, the ``(head, channel)`` pairs that vote for it.

    Args:
        target: key of ``skeletons`` whose skeleton is the output format (usually the dataset being evaluated).
        heads: the heads whose predictions are available (keys of ``skeletons``), in preference order for
            ``fill``; ``target`` need not be among them.
        skeletons: head name -> skeleton (name or :class:`~multipose.skeletons.Skeleton`); must contain ``target``.
        method: ``fill`` or ``average`` (see the module docstring).
        primary: the head whose joints come first (default ``target``); must be in ``heads``.
        safe_only: ``average`` skips tags marked ``vote: approx`` (default); ``False`` averages them too (only
            to measure what that costs).
    """
    if method not in METHODS:
        raise ValueError(
            f"voting method {method!r} is unknown; choose one of {list(METHODS)} (or none: no voting)"
        )
    heads = list(heads)
    primary = target if primary is None else primary
    missing = [h for h in {target, primary, *heads} if h not in skeletons]
    if missing:
        raise ValueError(
            f"voting: no skeleton given for {sorted(missing)}; skeletons are known for {list(skeletons)}"
        )
    if primary not in heads:
        raise ValueError(
            f"voting: the primary head {primary!r} has no predictions; heads with predictions: {heads}"
        )
    from multipose.skeletons import correspondence

    skels = _skeletons({h: skeletons[h] for h in {target, *heads}})
    k_target = skels[target].num_keypoints
    order = [primary, *[h for h in heads if h != primary]]
    exact = {h: dict((j, i) for i, j in correspondence(skels[h], skels[target])) for h in order}
    safe = {
        h: dict((j, i) for i, j in correspondence(skels[h], skels[target], safe_only=safe_only))
        for h in order
    }
    sources: list[list[tuple[str, int]]] = []
    for j in range(k_target):
        first = next(((h, exact[h][j]) for h in order if j in exact[h]), None)
        if first is None:
            sources.append([])
            continue
        chosen = [first]
        if method == "average":
            chosen += [(h, safe[h][j]) for h in order if h != first[0] and j in safe[h]]
        sources.append(chosen)
    return sources


def compatible_heads(
    target: str, codecs: Mapping[str, Any], heatmap_shapes: Mapping[str, Sequence[int]]
) -> list[str]:
    """Heads whose heatmaps can be averaged with ``target``'s: same codec settings (``repr``: type, sizes, sigma)
    and the same heatmap size. The others vote with decoded coordinates (:func:`vote_coords`)."""
    ref_codec, ref_shape = repr(codecs[target]), tuple(heatmap_shapes[target])[-2:]
    return [
        h
        for h in codecs
        if h in heatmap_shapes and repr(codecs[h]) == ref_codec and tuple(heatmap_shapes[h])[-2:] == ref_shape
    ]


def vote_heatmaps(
    target: str,
    heatmaps: Mapping[str, Tensor],
    skeletons: Mapping[str, Any],
    method: str,
    primary: str | None = None,
    safe_only: bool = True,
) -> Tensor:
    """Voted heatmaps ``[B, K_target, h, w]`` of ``target``'s skeleton from ``{head: [B, K_head, h, w]}``.

    All heads must share the heatmap size and the codec (see :func:`compatible_heads`); decode the result once
    with that codec. Averaging is the plain mean of the corresponding channels. See :func:`vote_sources`.
    """
    if not heatmaps:
        raise ValueError("vote_heatmaps: no heatmaps given")
    shapes = {h: tuple(t.shape) for h, t in heatmaps.items()}
    ref = next(iter(heatmaps.values()))
    for h, t in heatmaps.items():
        if t.ndim != 4 or t.shape[0] != ref.shape[0] or t.shape[-2:] != ref.shape[-2:]:
            raise ValueError(
                f"vote_heatmaps: heatmaps of {h!r} have shape {shapes[h]}, others {tuple(ref.shape)}; heads with "
                "another heatmap size (or codec) vote with decoded coordinates: use vote_coords"
            )
    skels = _skeletons({h: skeletons[h] for h in heatmaps if h in skeletons})
    for h, t in heatmaps.items():
        if h in skels and t.shape[1] != skels[h].num_keypoints:
            raise ValueError(
                f"vote_heatmaps: head {h!r} gives {t.shape[1]} channels but its skeleton "
                f"{skels[h].name!r} has {skels[h].num_keypoints}; slice the heatmaps to the skeleton first"
            )
    sources = vote_sources(target, list(heatmaps), skeletons, method, primary, safe_only)
    zero = ref.new_zeros(ref.shape[0], *ref.shape[-2:])
    channels = []
    for src in sources:
        if not src:
            channels.append(zero)
        elif len(src) == 1:
            channels.append(heatmaps[src[0][0]][:, src[0][1]])
        else:
            channels.append(torch.stack([heatmaps[h][:, i] for h, i in src]).mean(0))
    return torch.stack(channels, dim=1)


def vote_coords(
    target: str,
    coords: Mapping[str, np.ndarray],
    skeletons: Mapping[str, Any],
    method: str,
    primary: str | None = None,
    safe_only: bool = True,
    weighting: str = "score",
) -> np.ndarray:
    """Voted keypoints ``[B, K_target, 3]`` (x, y, score in image pixels) from ``{head: [B, K_head, 3]}``.

    ``weighting="score"`` (default) averages positions weighted by each head's keypoint score (a plain mean where
    all scores are 0); ``"plain"`` is the unweighted mean. The voted score is the plain mean of the sources'
    scores. See :func:`vote_sources`.
    """
    if weighting not in ("score", "plain"):
        raise ValueError(f"vote_coords: weighting must be 'score' or 'plain', got {weighting!r}")
    if not coords:
        raise ValueError("vote_coords: no coordinates given")
    arrays = {h: np.asarray(c) for h, c in coords.items()}
    batch = next(iter(arrays.values())).shape[0]
    for h, c in arrays.items():
        if c.ndim != 3 or c.shape[0] != batch or c.shape[2] != 3:
            raise ValueError(f"vote_coords: coordinates of {h!r} must be [B={batch}, K, 3], got {c.shape}")
    sources = vote_sources(target, list(arrays), skeletons, method, primary, safe_only)
    dtype = np.result_type(*arrays.values())
    out = np.zeros((batch, len(sources), 3), dtype=dtype)
    for j, src in enumerate(sources):
        if len(src) == 1:
            out[:, j] = arrays[src[0][0]][:, src[0][1]]
        elif src:
            out[:, j] = _average_coords(np.stack([arrays[h][:, i] for h, i in src]), weighting)
    return out


def _average_coords(stack: np.ndarray, weighting: str) -> np.ndarray:
    """``[S, B, 3]`` sources -> ``[B, 3]``: position mean (score-weighted or plain), plain mean of the scores."""
    scores = stack[..., 2]
    if weighting == "score":
        w = np.clip(scores, 0, None)
        total = w.sum(0, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1), 1.0 / len(stack))
    elif weighting == "plain":
        w = np.full_like(scores, 1.0 / len(stack))
    else:
        raise ValueError(f"weighting must be 'score' or 'plain', got {weighting!r}")
    return np.concatenate([(stack[..., :2] * w[..., None]).sum(0), scores.mean(0)[:, None]], axis=-1)


def vote(
    target: str,
    heatmaps: Mapping[str, Tensor],
    coords: Mapping[str, np.ndarray],
    skeletons: Mapping[str, Any],
    codecs: Mapping[str, Any],
    method: str,
    decode: Callable[[Tensor], np.ndarray],
    primary: str | None = None,
    safe_only: bool = True,
    weighting: str = "score",
) -> np.ndarray:
    """Voted image keypoints ``[B, K_target, 3]`` from every head's flip-averaged heatmaps and decoded coordinates
    (what validation and the predictor have), choosing per joint how to combine:

    * one source: that head's decoded keypoint, unchanged (bit-identical);
    * several sources whose heads all share the target's codec and heatmap size (:func:`compatible_heads`): the
      mean of their heatmaps, decoded once with ``decode`` (heatmaps ``[B, n, h, w]`` -> image ``[B, n, 3]``,
      i.e. the target codec's decode followed by the crop-to-image mapping of the batch);
    * otherwise the score-weighted (``weighting``) mean of the sources' image coordinates.

    ``heatmaps`` and ``coords`` have the same heads; ``codecs`` holds the codec of every head and of ``target``.
    """
    if set(heatmaps) != set(coords):
        raise ValueError(
            f"vote: heatmaps are given for {sorted(heatmaps)} but coordinates for {sorted(coords)}"
        )
    missing = [h for h in {target, *heatmaps} if h not in codecs]
    if missing:
        raise ValueError(f"vote: no codec given for {sorted(missing)}")
    shapes = {h: tuple(t.shape) for h, t in heatmaps.items()}
    if target not in shapes:
        shapes[target] = (0, 0, *codecs[target].heatmap_size)
    same = set(compatible_heads(target, {h: codecs[h] for h in {target, *heatmaps}}, shapes))
    sources = vote_sources(target, list(heatmaps), skeletons, method, primary, safe_only)
    arrays = {h: np.asarray(c) for h, c in coords.items()}
    batch = next(iter(arrays.values())).shape[0]
    out = np.zeros((batch, len(sources), 3), dtype=np.result_type(*arrays.values()))
    by_heatmap: list[int] = []
    for j, src in enumerate(sources):
        if len(src) == 1:
            out[:, j] = arrays[src[0][0]][:, src[0][1]]
        elif len(src) > 1 and all(h in same for h, _ in src):
            by_heatmap.append(j)
        elif src:
            stack = np.stack([arrays[h][:, i] for h, i in src])
            out[:, j] = _average_coords(stack, weighting)
    if by_heatmap:
        mean = torch.stack(
            [torch.stack([heatmaps[h][:, i] for h, i in sources[j]]).mean(0) for j in by_heatmap], dim=1
        )
        decoded = np.asarray(decode(mean))
        if decoded.shape != (batch, len(by_heatmap), 3):
            raise ValueError(f"vote: decode must map [B, n, h, w] to [B, n, 3]; got {decoded.shape}")
        out[:, by_heatmap] = decoded
    return out
