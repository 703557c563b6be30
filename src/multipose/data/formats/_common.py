"""Helpers shared by the format readers: JSON loading, field access, box policy, image checks."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..records import DatasetFormatError

logger = logging.getLogger("multipose.data.formats")

INVALID_BOX_POLICIES = ("error", "skip")


class Loc:
    """Lazy location prefix for error messages: ``<file>: annotation id=<id> (<list>[<index>])``.

    Formatting happens only when an error is raised, which keeps the per-annotation cost low.
    """

    __slots__ = ("file", "ann_id", "index", "list_name")

    def __init__(
        self, file: str | Path, ann_id: Any = None, index: int | None = None, list_name: str = "annotations"
    ) -> None:
        self.file, self.ann_id, self.index, self.list_name = file, ann_id, index, list_name

    def __str__(self) -> str:
        loc = []
        if self.ann_id is not None:
            loc.append(f"annotation id={self.ann_id}")
        if self.index is not None:
            loc.append(f"({self.list_name}[{self.index}])")
        return f"{self.file}: {' '.join(loc)}" if loc else str(self.file)


def where(
    file: str | Path, ann_id: Any = None, index: int | None = None, list_name: str = "annotations"
) -> Loc:
    """Location of an annotation for error messages (see :class:`Loc`)."""
    return Loc(file, ann_id, index, list_name)


def load_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; errors name the file, the JSON error position and the expected content."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: {what} file not found; check the path in the data config")
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            f"{path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"expected a {what} file - re-export or re-download it"
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(
            f"{path}: not a UTF-8 text file ({exc}); expected a {what} JSON file"
        ) from None


def require(obj: Mapping[str, Any], key: str, loc: str | Loc, hint: str = "") -> Any:
    """``obj[key]`` or a DatasetFormatError naming the missing field."""
    if not isinstance(obj, Mapping):
        raise DatasetFormatError(f"{loc}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        present = ", ".join(sorted(map(str, obj))) or "none"
        raise DatasetFormatError(
            f"{loc}: missing required field '{key}' (fields present: {present}){'; ' + hint if hint else ''}"
        )
    return obj[key]


def as_float_array(value: Any, loc: str | Loc, field: str, length: int | None = None) -> np.ndarray:
    """Flat float32 array from a JSON number list; checks length and finiteness."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise DatasetFormatError(
            f"{loc}: field '{field}' must be a list of numbers, got {value!r:.80}"
        ) from None
    if arr.ndim == 0:
        raise DatasetFormatError(f"{loc}: field '{field}' must be a list of numbers, got {value!r:.80}")
    arr = arr.reshape(-1)
    if length is not None and arr.size != length:
        raise DatasetFormatError(f"{loc}: field '{field}' has {arr.size} values, expected {length}")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise DatasetFormatError(
            f"{loc}: field '{field}' has null, NaN or infinite values (flat positions {bad}); "
            "every value must be a finite number"
        )
    return arr


def as_float(value: Any, loc: str | Loc, field: str) -> float:
    """A finite JSON number (not a list, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetFormatError(f"{loc}: field '{field}' must be a finite number, got {value!r:.80}")
    return float(value)


def as_int(value: Any, loc: str | Loc, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise DatasetFormatError(f"{loc}: field '{field}' must be an integer id, got {value!r}")
    return int(value)


def check_policy(invalid_boxes: str) -> None:
    if invalid_boxes not in INVALID_BOX_POLICIES:
        raise ValueError(f"data.invalid_boxes must be one of {INVALID_BOX_POLICIES}, got {invalid_boxes!r}")


def as_box(value: Any, loc: str | Loc, field: str = "bbox") -> tuple[float, float, float, float]:
    """An ``xywh`` box as four finite python floats."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise DatasetFormatError(
            f"{loc}: field '{field}' must be a list [x, y, w, h] of 4 numbers, got {value!r:.80}"
        )
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{loc}: field '{field}' must be 4 numbers, got {value!r:.80}") from None
    if not all(map(math.isfinite, (x, y, w, h))):
        raise DatasetFormatError(f"{loc}: field '{field}' has null, NaN or infinite values: {value!r:.80}")
    return x, y, w, h


def clip_box(
    box: tuple[float, float, float, float], width: float, height: float
) -> tuple[float, float, float, float]:
    """mmpose 0.x's box sanitising (``x1 = max(0, x)``, ``x2 = min(W-1, x1 + max(0, w-1))``, same for y); no-op if
    the image size is unknown (0). The result is a box the caller keeps only if its width and height are > 0."""
    if not width or not height:
        return box
    from multipose.data.geometry import sanitize_box  # the convention lives with the crop geometry

    return sanitize_box(box, width, height)


def box_is_valid(box: tuple[float, float, float, float]) -> bool:
    return box[2] > 0 and box[3] > 0


def check_images_exist(paths: Iterable[str], file: str | Path, img_dir: str | Path) -> None:
    """Raise one DatasetFormatError listing missing image files (count + first few)."""
    missing = sorted({p for p in paths if not os.path.isfile(p)})
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DatasetFormatError(
            f"{file}: {len(missing)} image file(s) referenced by annotations do not exist under img_dir "
            f"'{img_dir}' (e.g. {shown}); fix img_dir in the data config, or set data.on_bad_image=skip to "
            "leave their annotations out (listed in the log and metrics.json)"
        )


def finish_read(
    instances: list,
    images: dict,
    ann_file: str | Path,
    img_dir: str | Path,
    *,
    check_images: bool,
    return_images: bool | str,
):
    """The common end of a reader whose ``images`` are ``{image_id: ImageRecord}``: check that the instances'
    image files exist (``check_images``), then return ``instances`` alone, with the image records
    (``return_images="records"``) or with ``{image_id: path}`` (``return_images=True``)."""
    if check_images:
        check_images_exist({inst.image_path for inst in instances}, ann_file, img_dir)
    if return_images == "records":
        return instances, images
    if return_images:
        return instances, {i: v.path for i, v in images.items()}
    return instances
