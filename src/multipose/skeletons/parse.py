"""Validating one skeleton file into a :class:`~multipose.skeletons.skeleton.Skeleton`.

Each built-in skeleton is one YAML file in this package (``coco.yaml``, ``mpii.yaml``, ...). A file
lists the keypoints in the dataset's official order, each with

* ``name``      the dataset's own keypoint name (unique within the skeleton),
* ``semantic``  a tag from the shared vocabulary (``vocabulary.yaml``); equal tags in two skeletons mean
                the same anatomical point, which is how cross-skeleton correspondences are found,
* ``swap``      (optional) the name of the left/right mirror partner; ``flip_indices`` is derived from it,
* ``half``      (optional) ``upper`` marks the upper-body group of the half-body augmentation; every other
                keypoint is in the lower group, as in mmpose (``half: lower`` is accepted as documentation).
                A skeleton with no ``upper`` keypoint has no half-body split,

plus ``links`` (pairs of keypoint names, for drawing), ``sigmas`` (OKS constants, one per keypoint),
``joint_weights`` (loss weights, one per keypoint, default 1), and optionally ``aliases`` (other names
the skeleton answers to), ``num_keypoints`` (checked against the list), ``tags`` (new semantic tags, same
format as ``vocabulary.yaml``) and ``sigmas_asymmetry: official`` (see below). A file may instead contain
only ``name`` and ``alias_of: <other skeleton>`` to reuse another skeleton under a new name.

Left/right partners must have equal sigmas: a swapped pair of values is the typical copy error (AP-10K's
sigmas copied from COCO by index). Datasets whose official evaluation code uses asymmetric sigmas (AIC's
empirical values, COCO-WholeBody's feet and face) say so with ``sigmas_asymmetry: official`` and a comment
naming the source.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multipose.skeletons.skeleton import Skeleton
from multipose.skeletons.vocabulary import Vocabulary, extend_vocabulary
from multipose.skeletons.yaml_files import SkeletonError, check_name

__all__ = ["parse_skeleton"]

_TOP_KEYS = {
    "name",
    "aliases",
    "num_keypoints",
    "keypoints",
    "links",
    "sigmas",
    "joint_weights",
    "description",
    "sigmas_asymmetry",
    "tags",
}
_ALIAS_KEYS = {"name", "alias_of", "aliases", "description"}
_KP_KEYS = {"name", "semantic", "swap", "half"}


def _float_list(path: Path, key: str, value: Any, k: int, positive: bool) -> np.ndarray:
    if not isinstance(value, list):
        raise SkeletonError(
            f"{path}: field '{key}' must be a list of {k} numbers, got {type(value).__name__}"
        )
    if len(value) != k:
        raise SkeletonError(
            f"{path}: field '{key}' has {len(value)} values but the skeleton has {k} keypoints; "
            f"give exactly one value per keypoint, in keypoint order"
        )
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SkeletonError(f"{path}: field '{key}'[{i}] must be a finite number, got {v!r}")
        if (v <= 0) if positive else (v < 0):
            cond = "> 0" if positive else ">= 0"
            raise SkeletonError(f"{path}: field '{key}'[{i}] must be {cond}, got {v!r}")
        out.append(float(v))
    arr = np.asarray(out, dtype=np.float32)
    arr.setflags(write=False)
    return arr


def parse_skeleton(
    raw: Any, path: Path, vocab: Vocabulary, lookup: Callable[[str], Skeleton]
) -> tuple[Skeleton, Vocabulary]:
    """Validate one skeleton file; returns the skeleton and ``vocab`` extended by the file's ``tags``.

    ``lookup`` finds the skeleton an ``alias_of`` file names (the registry's ``get_skeleton``)."""
    if not isinstance(raw, dict):
        raise SkeletonError(f"{path}: a skeleton file must be a YAML mapping with 'name' and 'keypoints'")
    name = check_name(path, "name", raw.get("name"))
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list):
        raise SkeletonError(f"{path}: field 'aliases' must be a list of names, got {aliases!r}")
    aliases = tuple(check_name(path, "aliases", a) for a in aliases)
    description = str(raw.get("description", ""))

    if "alias_of" in raw:
        unknown = set(raw) - _ALIAS_KEYS
        if unknown:
            raise SkeletonError(
                f"{path}: an 'alias_of' file may only contain {sorted(_ALIAS_KEYS)}; remove {sorted(unknown)}"
            )
        base = lookup(check_name(path, "alias_of", raw["alias_of"]))
        alias = dataclasses.replace(
            base,
            name=name,
            aliases=aliases,
            source=str(path),
            description=description or f"alias of {base.name}",
        )
        return alias, vocab

    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise SkeletonError(f"{path}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    if "tags" in raw:
        vocab = extend_vocabulary(vocab, raw["tags"], str(path))
    kps = raw.get("keypoints")
    if not isinstance(kps, list) or not kps:
        raise SkeletonError(
            f"{path}: field 'keypoints' must be a non-empty list of {{name, semantic, swap, half}}"
        )

    names: list[str] = []
    tags: list[str] = []
    swaps: list[str | None] = []
    halves: list[str | None] = []
    for i, kp in enumerate(kps):
        where = f"{path}: keypoints[{i}]"
        if not isinstance(kp, dict):
            raise SkeletonError(f"{where} must be a mapping {{name, semantic, swap, half}}, got {kp!r}")
        bad = set(kp) - _KP_KEYS
        if bad:
            raise SkeletonError(f"{where}: unknown field(s) {sorted(bad)}; allowed: {sorted(_KP_KEYS)}")
        kname = kp.get("name")
        if not isinstance(kname, str) or not kname:
            raise SkeletonError(f"{where}: field 'name' is missing or empty")
        if kname in names:
            raise SkeletonError(
                f"{where}: duplicate keypoint name '{kname}' (also keypoints[{names.index(kname)}]); names must be unique"
            )
        tag = kp.get("semantic")
        if not isinstance(tag, str):
            raise SkeletonError(
                f"{where} ('{kname}'): field 'semantic' is missing; give a tag from {vocab.source} "
                "or declare a new one under 'tags:' in this file"
            )
        if tag not in vocab:
            close = difflib.get_close_matches(tag, vocab.tags, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise SkeletonError(
                f"{where} ('{kname}'): field 'semantic': unknown semantic tag '{tag}'.{hint} "
                f"Use a tag from {vocab.source}, or declare the new tag under 'tags:' in this file "
                "(or in a vocabulary.yaml next to it)."
            )
        if tag in tags:
            raise SkeletonError(
                f"{where} ('{kname}'): field 'semantic': tag '{tag}' is already used by "
                f"'{names[tags.index(tag)]}'; each tag may appear once per skeleton"
            )
        half = kp.get("half")
        if half not in (None, "upper", "lower"):
            raise SkeletonError(
                f"{where} ('{kname}'): field 'half' must be 'upper', 'lower' or absent, got {half!r}"
            )
        swap = kp.get("swap")
        if swap is not None and not isinstance(swap, str):
            raise SkeletonError(f"{where} ('{kname}'): field 'swap' must be a keypoint name, got {swap!r}")
        names.append(kname)
        tags.append(tag)
        swaps.append(swap)
        halves.append(half)
    k = len(names)

    if "num_keypoints" in raw and raw["num_keypoints"] != k:
        raise SkeletonError(
            f"{path}: field 'num_keypoints' says {raw['num_keypoints']} but 'keypoints' lists {k} entries"
        )

    index = {n: i for i, n in enumerate(names)}
    flip = list(range(k))
    for i, partner in enumerate(swaps):
        if partner is None:
            continue
        where = f"{path}: keypoints[{i}] ('{names[i]}'): field 'swap'"
        if partner not in index:
            raise SkeletonError(f"{where}: swap partner '{partner}' is not a keypoint of this skeleton")
        j = index[partner]
        if j == i:
            raise SkeletonError(
                f"{where}: a keypoint cannot be its own swap partner; omit 'swap' for central points"
            )
        if swaps[j] != names[i]:
            raise SkeletonError(
                f"{where}: asymmetric swap: '{names[i]}' swaps with '{partner}' but '{partner}' swaps with "
                f"{swaps[j]!r}; set swap: {names[i]} on '{partner}'"
            )
        flip[i] = j
    for i in range(k):
        expected = vocab.mirror_of(tags[i])
        if tags[flip[i]] != expected:
            partner_txt = (
                f"its swap partner '{names[flip[i]]}' has tag '{tags[flip[i]]}'"
                if flip[i] != i
                else "it has no swap partner"
            )
            raise SkeletonError(
                f"{path}: keypoints[{i}] ('{names[i]}'): semantic tag '{tags[i]}' mirrors to '{expected}', but "
                f"{partner_txt}; fix 'swap' or 'semantic' so that mirrored points carry mirrored tags"
            )

    links_raw = raw.get("links") or []
    if not isinstance(links_raw, list):
        raise SkeletonError(f"{path}: field 'links' must be a list of [keypoint, keypoint] pairs")
    links: list[tuple[int, int]] = []
    for li, link in enumerate(links_raw):
        if not isinstance(link, list) or len(link) != 2:
            raise SkeletonError(f"{path}: links[{li}] must be a pair [a, b] of keypoint names, got {link!r}")
        ends = []
        for end in link:
            if isinstance(end, str) and end in index:
                ends.append(index[end])
            elif isinstance(end, int) and not isinstance(end, bool) and 0 <= end < k:
                ends.append(end)
            else:
                raise SkeletonError(f"{path}: links[{li}]: '{end}' is not a keypoint name (or index < {k})")
        links.append((ends[0], ends[1]))

    if "sigmas" not in raw:
        raise SkeletonError(
            f"{path}: field 'sigmas' is missing; give one OKS sigma per keypoint "
            "(0.079 is a common neutral value when no official one exists)"
        )
    sigmas = _float_list(path, "sigmas", raw["sigmas"], k, positive=True)
    weights = _float_list(path, "joint_weights", raw.get("joint_weights", [1.0] * k), k, positive=False)
    _check_sigma_symmetry(path, raw.get("sigmas_asymmetry"), names, flip, sigmas)
    upper = tuple(i for i, h in enumerate(halves) if h == "upper")
    # mmpose: "lower" is every joint not in the upper group (COCO-WholeBody face and hands included)
    lower = tuple(i for i in range(k) if i not in upper) if upper else ()

    return Skeleton(
        name=name,
        keypoints=tuple(names),
        semantic=tuple(tags),
        flip_indices=tuple(flip),
        links=tuple(links),
        sigmas=sigmas,
        joint_weights=weights,
        upper_body=upper,
        lower_body=lower,
        aliases=aliases,
        source=str(path),
        description=description,
    ), vocab


def _check_sigma_symmetry(
    path: Path, marker: Any, names: Sequence[str], flip: Sequence[int], sigmas: np.ndarray
) -> None:
    """Left/right partners need equal sigmas unless the file says ``sigmas_asymmetry: official``."""
    if marker not in (None, "official"):
        raise SkeletonError(
            f"{path}: field 'sigmas_asymmetry' must be 'official' (with a comment naming the official source) "
            f"or absent, got {marker!r}"
        )
    unequal = [(i, j) for i, j in enumerate(flip) if i < j and sigmas[i] != sigmas[j]]
    if unequal and marker is None:
        i, j = unequal[0]
        more = f" (and {len(unequal) - 1} more pair(s))" if len(unequal) > 1 else ""
        raise SkeletonError(
            f"{path}: field 'sigmas': left/right partners '{names[i]}' (index {i}, sigma {sigmas[i]:.4g}) and "
            f"'{names[j]}' (index {j}, sigma {sigmas[j]:.4g}) have different OKS sigmas{more}. This is usually "
            "a list copied from another skeleton by index; give partners the same value in the official order, "
            "or, if the dataset's official evaluation code really uses asymmetric sigmas, add "
            "'sigmas_asymmetry: official' with a comment naming that source"
        )
    if not unequal and marker is not None:
        raise SkeletonError(
            f"{path}: field 'sigmas_asymmetry' says official asymmetric sigmas, but every left/right pair has "
            "equal sigmas; remove the field"
        )
