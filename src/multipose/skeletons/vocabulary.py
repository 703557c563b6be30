"""The shared semantic vocabulary: tags with a description, a vote class and a mirror tag (``vocabulary.yaml``),
extended by the tags skeleton files declare."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multipose.skeletons.yaml_files import NAME_RE, VOCABULARY_FILE, SkeletonError, read_yaml

__all__ = ["Vocabulary", "default_mirror", "extend_vocabulary", "load_vocabulary"]


def default_mirror(tag: str) -> str:
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
        if not isinstance(tag, str) or not NAME_RE.match(tag):
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
        m = explicit.get(tag, default_mirror(tag))
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
    raw = read_yaml(path)
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
            m = explicit.get(tag, default_mirror(tag))
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
