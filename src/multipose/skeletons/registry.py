"""Skeleton registry: the built-in skeletons (one YAML file next to this module each, ``coco.yaml``, ``mpii.yaml``,
...), the ones users load, and lookup by name or alias. The file format is described in :mod:`.parse`.

Users add a skeleton with :func:`load_skeleton_file` (``register=True`` makes it visible to
:func:`get_skeleton`), :func:`load_skeleton_dirs` (every YAML of a folder; the data config's
``skeleton_dirs``), or by passing a ``.yaml`` path wherever a skeleton name is accepted. New semantic
tags come from the file's ``tags`` or from a ``vocabulary.yaml`` next to it; once loaded they join the
shared vocabulary (:func:`active_vocabulary`). Every validation error names the file and the field and
says how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multipose.skeletons.parse import parse_skeleton
from multipose.skeletons.skeleton import Skeleton
from multipose.skeletons.vocabulary import (  # noqa: F401  (re-exported: the old import path)
    Vocabulary,
    default_mirror,
    extend_vocabulary,
    load_vocabulary,
)
from multipose.skeletons.yaml_files import (  # noqa: F401  (SkeletonError, SKELETON_DIR re-exported)
    SKELETON_DIR,
    VOCABULARY_FILE,
    SkeletonError,
    read_yaml,
)

__all__ = [
    "active_vocabulary",
    "available_skeletons",
    "get_skeleton",
    "load_skeleton_dirs",
    "load_skeleton_file",
    "register_skeleton",
    "register_skeleton_dirs_option",
]

#: the old private name, still imported by ``multipose.models.prompt_tokens``
_default_mirror = default_mirror

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
        raw = read_yaml(path)
        if isinstance(raw, dict) and "alias_of" in raw:
            pending.append((path, raw))
            continue
        skel, vocab = parse_skeleton(raw, path, vocab, get_skeleton)
        _add(skel, overwrite=overwrite)
    for path, raw in pending:
        skel, vocab = parse_skeleton(raw, path, vocab, get_skeleton)
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
        raw = read_yaml(sibling)
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
    skel, vocab = parse_skeleton(read_yaml(path), path, vocab, get_skeleton)
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
    raw = read_yaml(path)
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
