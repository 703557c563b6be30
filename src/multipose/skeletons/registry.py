"""Skeleton registry: skeletons are YAML data files, validated on load.

Each built-in skeleton is one YAML file next to this module (``coco.yaml``, ``mpii.yaml``, ...). A file
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

Users add a skeleton with :func:`load_skeleton_file` (``register=True`` makes it visible to
:func:`get_skeleton`), :func:`load_skeleton_dirs` (every YAML of a folder; the data config's
``skeleton_dirs``), or by passing a ``.yaml`` path wherever a skeleton name is accepted. New semantic
tags come from the file's ``tags`` or from a ``vocabulary.yaml`` next to it; once loaded they join the
shared vocabulary (:func:`active_vocabulary`). Every validation error names the file and the field and
says how to fix it.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "Skeleton",
    "SkeletonError",
    "UnifiedLayout",
    "Vocabulary",
    "available_skeletons",
    "active_vocabulary",
    "correspondence",
    "get_skeleton",
    "load_skeleton_dirs",
    "load_skeleton_file",
    "load_vocabulary",
    "register_skeleton",
    "unified_layout",
]

SKELETON_DIR = Path(__file__).resolve().parent
VOCABULARY_FILE = SKELETON_DIR / "vocabulary.yaml"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
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


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster


class SkeletonError(ValueError):
    """A skeleton file or skeleton name is invalid (message names the file/field and the fix)."""


# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------


def _default_mirror(tag: str) -> str:
    """Swap the whole-word tokens ``left``/``right`` in an underscore-separated tag."""
    tokens = tag.split("_")
    swapped = ["right" if t == "left" else "left" if t == "right" else t for t in tokens]
    return "_".join(swapped)


@dataclass(frozen=True)
class Vocabulary:
    """The shared semantic tags: description, vote class (``safe``/``approx``) and mirror tag.

    ``origin[tag]`` is the file that declared a tag not in the package vocabulary (user tags).
    """

    description: Mapping[str, str]
    vote: Mapping[str, str]
    mirror: Mapping[str, str]
    source: str = ""
    origin: Mapping[str, str] = field(default_factory=dict)

    def __contains__(self, tag: object) -> bool:
        return tag in self.description

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.description)

    def mirror_of(self, tag: str) -> str:
        """Tag of the mirror-image point (itself for central points)."""
        return self.mirror[tag]

    def where(self, tag: str) -> str:
        """The file that declared ``tag``."""
        return self.origin.get(tag, self.source)


def _parse_tag_specs(tags: Any, where: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``{tag: {desc, vote, mirror}}`` -> (descriptions, votes, explicit mirrors); errors name ``where``."""
    if not isinstance(tags, dict) or not tags:
        raise SkeletonError(
            f"{where}: field 'tags' must be a non-empty mapping tag -> {{desc, vote, mirror}}"
        )
    desc: dict[str, str] = {}
    vote: dict[str, str] = {}
    explicit: dict[str, str] = {}
    for tag, spec in tags.items():
        spec = spec or {}
        if not isinstance(tag, str) or not _NAME_RE.match(tag):
            raise SkeletonError(f"{where}: tag {tag!r} must be a name of letters, digits, '_', '-' or '.'")
        if not isinstance(spec, dict):
            raise SkeletonError(f"{where}: tag '{tag}' must map to {{desc, vote, mirror}}, got {spec!r}")
        unknown = set(spec) - {"desc", "vote", "mirror"}
        if unknown:
            raise SkeletonError(
                f"{where}: tag '{tag}' has unknown field(s) {sorted(unknown)}; allowed: desc, vote, mirror"
            )
        desc[tag] = str(spec.get("desc", ""))
        v = spec.get("vote", "safe")
        if v not in ("safe", "approx"):
            raise SkeletonError(f"{where}: tag '{tag}' field 'vote' must be 'safe' or 'approx', got {v!r}")
        vote[tag] = v
        if "mirror" in spec:
            explicit[tag] = str(spec["mirror"])
    return desc, vote, explicit


def _resolve_mirrors(
    desc: Mapping[str, str], explicit: Mapping[str, str], fixed: Mapping[str, str], where: str
) -> dict[str, str]:
    """Mirror of every tag: ``fixed`` (already validated tags), else explicit, else the left/right rule."""
    mirror: dict[str, str] = dict(fixed)
    for tag in desc:
        if tag in fixed:
            continue
        m = explicit.get(tag, _default_mirror(tag))
        if m not in desc:
            raise SkeletonError(
                f"{where}: tag '{tag}' mirrors to '{m}', which is not in the vocabulary; add '{m}' or fix the tag"
            )
        mirror[tag] = m
    for tag, m in mirror.items():
        if mirror[m] != tag:
            raise SkeletonError(
                f"{where}: mirror of tag '{tag}' is '{m}' but the mirror of '{m}' is '{mirror[m]}'; "
                "mirrors must be symmetric"
            )
    return mirror


def _parse_vocabulary(path: Path) -> Vocabulary:
    raw = _read_yaml(path)
    desc, vote, explicit = _parse_tag_specs(raw.get("tags") if isinstance(raw, dict) else None, str(path))
    mirror = _resolve_mirrors(desc, explicit, {}, str(path))
    return Vocabulary(description=desc, vote=vote, mirror=mirror, source=str(path))


def extend_vocabulary(base: Vocabulary, tags: Any, where: str) -> Vocabulary:
    """``base`` plus the tags declared in ``tags`` (vocabulary format) by the file ``where``.

    Re-declaring an existing tag is allowed only with the same description, vote and mirror (so loading a
    file twice is harmless); anything else is an error naming both files.
    """
    desc, vote, explicit = _parse_tag_specs(tags, where)
    new_desc = dict(base.description)
    new_vote = dict(base.vote)
    origin = dict(base.origin)
    fresh: dict[str, str] = {}
    for tag in desc:
        if tag in base:
            m = explicit.get(tag, _default_mirror(tag))
            if (desc[tag], vote[tag], m) != (base.description[tag], base.vote[tag], base.mirror[tag]):
                raise SkeletonError(
                    f"{where}: tag '{tag}' is already defined (in {base.where(tag)}) with another "
                    "description, vote or mirror; use the existing tag as it is or give the new point another name"
                )
            continue
        fresh[tag] = desc[tag]
        new_desc[tag] = desc[tag]
        new_vote[tag] = vote[tag]
        origin[tag] = where
    if not fresh:
        return base
    mirror = _resolve_mirrors(new_desc, explicit, base.mirror, where)
    return Vocabulary(description=new_desc, vote=new_vote, mirror=mirror, source=base.source, origin=origin)


@functools.cache
def load_vocabulary(path: str | None = None) -> Vocabulary:
    """Load (and cache) a vocabulary file; default: the package's ``vocabulary.yaml``.

    Tags declared by skeleton files are not in it: use :func:`active_vocabulary` for the full set.
    """
    return _parse_vocabulary(Path(path) if path else VOCABULARY_FILE)


# --------------------------------------------------------------------------------------------------
# Skeleton
# --------------------------------------------------------------------------------------------------


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


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SkeletonError(f"{path}: skeleton file not found") from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise SkeletonError(f"{path}: not valid YAML ({exc})") from None


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


def _check_name(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise SkeletonError(
            f"{path}: field '{key}' must be a name of letters, digits, '_', '-' or '.', got {value!r}"
        )
    return value


def _parse_skeleton(raw: Any, path: Path, vocab: Vocabulary) -> tuple[Skeleton, Vocabulary]:
    """Validate one skeleton file; returns the skeleton and ``vocab`` extended by the file's ``tags``."""
    if not isinstance(raw, dict):
        raise SkeletonError(f"{path}: a skeleton file must be a YAML mapping with 'name' and 'keypoints'")
    name = _check_name(path, "name", raw.get("name"))
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list):
        raise SkeletonError(f"{path}: field 'aliases' must be a list of names, got {aliases!r}")
    aliases = tuple(_check_name(path, "aliases", a) for a in aliases)
    description = str(raw.get("description", ""))

    if "alias_of" in raw:
        unknown = set(raw) - _ALIAS_KEYS
        if unknown:
            raise SkeletonError(
                f"{path}: an 'alias_of' file may only contain {sorted(_ALIAS_KEYS)}; remove {sorted(unknown)}"
            )
        base = get_skeleton(_check_name(path, "alias_of", raw["alias_of"]))
        alias = Skeleton(
            name=name,
            keypoints=base.keypoints,
            semantic=base.semantic,
            flip_indices=base.flip_indices,
            links=base.links,
            sigmas=base.sigmas,
            joint_weights=base.joint_weights,
            upper_body=base.upper_body,
            lower_body=base.lower_body,
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


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Skeleton] = {}
_ALIASES: dict[str, str] = {}
_BUILTINS_LOADED = False
_ACTIVE_VOCABULARY: Vocabulary | None = None  # package vocabulary + tags declared by loaded skeleton files


def _add(skel: Skeleton, overwrite: bool) -> None:
    existing = _REGISTRY.get(skel.name)
    if existing is not None and skel.source and existing.source == skel.source:
        overwrite = True  # the same file loaded again (e.g. skeleton_dirs seen by train and eval)
    for key in (skel.name, *skel.aliases):
        owner = _ALIASES.get(key, key if key in _REGISTRY else None)
        if owner is not None and owner != skel.name and not overwrite:
            raise SkeletonError(
                f"{skel.source or skel.name}: name '{key}' is already taken by skeleton '{owner}' "
                f"({_REGISTRY[owner].source}); choose another name or pass overwrite=True"
            )
    if skel.name in _REGISTRY and not overwrite:
        raise SkeletonError(
            f"{skel.source or skel.name}: skeleton '{skel.name}' is already registered "
            f"(from {_REGISTRY[skel.name].source}); choose another name or pass overwrite=True"
        )
    _REGISTRY[skel.name] = skel
    for alias in skel.aliases:
        _ALIASES[alias] = skel.name


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED, _ACTIVE_VOCABULARY
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # set first: alias files call get_skeleton while loading
    _ACTIVE_VOCABULARY = load_vocabulary()
    try:
        files = sorted(p for p in SKELETON_DIR.glob("*.yaml") if p != VOCABULARY_FILE)
        _ACTIVE_VOCABULARY = _register_files(files, _ACTIVE_VOCABULARY, overwrite=False)
    except Exception:
        _REGISTRY.clear()
        _ALIASES.clear()
        _BUILTINS_LOADED = False
        _ACTIVE_VOCABULARY = None
        raise


def _register_files(files: Sequence[Path], vocab: Vocabulary, overwrite: bool) -> Vocabulary:
    """Parse and register skeleton files (alias files last); returns the vocabulary grown by their tags."""
    pending = []
    for path in files:
        raw = _read_yaml(path)
        if isinstance(raw, dict) and "alias_of" in raw:
            pending.append((path, raw))
            continue
        skel, vocab = _parse_skeleton(raw, path, vocab)
        _add(skel, overwrite=overwrite)
    for path, raw in pending:
        skel, vocab = _parse_skeleton(raw, path, vocab)
        _add(skel, overwrite=overwrite)
    return vocab


def active_vocabulary() -> Vocabulary:
    """The package vocabulary plus every tag declared by the skeleton files loaded so far."""
    _ensure_builtins()
    assert _ACTIVE_VOCABULARY is not None
    return _ACTIVE_VOCABULARY


def _with_sibling_vocabulary(path: Path, vocab: Vocabulary) -> Vocabulary:
    """Extend ``vocab`` by a user ``vocabulary.yaml`` in the folder of ``path`` (if there is one)."""
    sibling = path.parent / VOCABULARY_FILE.name
    if sibling.is_file() and sibling.resolve() != VOCABULARY_FILE:
        raw = _read_yaml(sibling)
        vocab = extend_vocabulary(vocab, raw.get("tags") if isinstance(raw, dict) else None, str(sibling))
    return vocab


def load_skeleton_file(path: str | Path, register: bool = False, overwrite: bool = False) -> Skeleton:
    """Load and validate one skeleton YAML file (any location).

    With ``register=True`` the skeleton (and its aliases) become available to :func:`get_skeleton`.
    Raises :class:`SkeletonError` naming the file and the offending field.
    """
    global _ACTIVE_VOCABULARY
    path = Path(path)
    vocab = _with_sibling_vocabulary(path, active_vocabulary())
    skel, vocab = _parse_skeleton(_read_yaml(path), path, vocab)
    if register:
        _add(skel, overwrite=overwrite)
    _ACTIVE_VOCABULARY = vocab  # tags are definitions only: keeping them is harmless and makes them shareable
    return skel


def load_skeleton_dirs(dirs: Sequence[str | Path] | str | Path, overwrite: bool = False) -> list[Skeleton]:
    """Register every skeleton YAML (``*.yaml``, ``*.yml``) in each folder of ``dirs``.

    A ``vocabulary.yaml`` in a folder declares new semantic tags for that folder's skeletons. Loading the
    same folder again is a no-op; a name already taken by another file is an error unless ``overwrite``.
    Returns the skeletons loaded (alias files included).
    """
    global _ACTIVE_VOCABULARY
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    vocab = active_vocabulary()
    loaded: list[Skeleton] = []
    for d in dirs:
        folder = Path(d).expanduser()
        if not folder.is_dir():
            raise SkeletonError(
                f"skeleton directory '{d}' does not exist (resolved: {folder.resolve()}); fix data.skeleton_dirs "
                "(relative paths are relative to the working directory) or create the folder"
            )
        files = sorted(
            p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.name != VOCABULARY_FILE.name
        )
        vocab = _with_sibling_vocabulary(folder / "_", vocab)
        vocab = _register_files(files, vocab, overwrite=overwrite)
        loaded += [_REGISTRY[n] for n in (_parse_name(p) for p in files) if n in _REGISTRY]
    _ACTIVE_VOCABULARY = vocab
    return loaded


def _parse_name(path: Path) -> str | None:
    raw = _read_yaml(path)
    return raw.get("name") if isinstance(raw, dict) else None


def register_skeleton(skeleton: Skeleton, overwrite: bool = False) -> None:
    """Make an already built :class:`Skeleton` available by name."""
    _ensure_builtins()
    _add(skeleton, overwrite=overwrite)


def available_skeletons(include_aliases: bool = False) -> list[str]:
    """Sorted names of the registered skeletons (optionally with their aliases)."""
    _ensure_builtins()
    names = set(_REGISTRY)
    if include_aliases:
        names |= set(_ALIASES)
    return sorted(names)


def get_skeleton(name: str | Path | Skeleton) -> Skeleton:
    """Look up a skeleton by name or alias; a ``.yaml``/``.yml`` path is loaded as a file.

    A :class:`Skeleton` is returned unchanged. Unknown names raise :class:`SkeletonError` listing the
    known ones.
    """
    if isinstance(name, Skeleton):
        return name
    _ensure_builtins()
    key = str(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key in _ALIASES:
        return _REGISTRY[_ALIASES[key]]
    if key.endswith((".yaml", ".yml")):
        return load_skeleton_file(key)
    close = difflib.get_close_matches(key, available_skeletons(include_aliases=True), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise SkeletonError(
        f"unknown skeleton '{key}'.{hint} Known skeletons: {', '.join(available_skeletons())} "
        f"(aliases: {', '.join(sorted(_ALIASES))}). To add one, write a YAML file and pass its path "
        "or call multipose.skeletons.load_skeleton_file(path, register=True)."
    )


# --------------------------------------------------------------------------------------------------
# Layouts and correspondences
# --------------------------------------------------------------------------------------------------


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


def register_skeleton_dirs_option(value: Any, error: type[Exception] = SkeletonError) -> list[Skeleton]:
    """Validate and apply the ``data.skeleton_dirs`` config option (null or a list of folder paths)."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
        raise error(f"data.skeleton_dirs must be a list of folder paths (or null), got {value!r}")
    try:
        return load_skeleton_dirs(value)
    except SkeletonError as err:
        raise error(f"data.skeleton_dirs: {err}") from err
