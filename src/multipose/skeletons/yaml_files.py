"""Reading skeleton and vocabulary YAML files: where the package's files are, the YAML parser, the name rule and
the error every validation raises."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["NAME_RE", "SKELETON_DIR", "VOCABULARY_FILE", "SkeletonError", "check_name", "read_yaml"]

SKELETON_DIR = Path(__file__).resolve().parent
VOCABULARY_FILE = SKELETON_DIR / "vocabulary.yaml"

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster


class SkeletonError(ValueError):
    """A skeleton file or skeleton name is invalid (message names the file/field and the fix)."""


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SkeletonError(f"{path}: skeleton file not found") from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise SkeletonError(f"{path}: not valid YAML ({exc})") from None


def check_name(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise SkeletonError(
            f"{path}: field '{key}' must be a name of letters, digits, '_', '-' or '.', got {value!r}"
        )
    return value
