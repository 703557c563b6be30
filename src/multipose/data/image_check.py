"""Pre-flight check of image files, so that a corrupt image fails a run at start-up, not an hour in.

``data.check_images`` chooses how deep the check goes:

``header``  (default) the file exists, is not empty, starts with the signature of an image format
            OpenCV reads, and a JPEG ends with its end-of-image marker / a PNG with its ``IEND`` chunk
            (reads the first and last few KiB of each file; a truncated download is caught).
``decode``  ``header`` plus a full decode with OpenCV (slow: every pixel of every image).
``off``     no pre-flight; a bad file raises :class:`~multipose.data.dataset.ImageReadError` when drawn.

Results are cached per file list in a JSON file keyed by each file's size and modification time, so
a second run checks only files that changed. The cache file is replaced atomically. ``data.on_bad_image``
says what to do with bad files: ``error`` (default) stops with the list, ``skip`` leaves their
annotations out and lists them in the log and in ``metrics.json``
(:meth:`~multipose.data.datamodule.MultiPoseDataModule.skipped_images_metrics`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["BAD_IMAGE_POLICIES", "CHECK_MODES", "check_image_files", "header_problem", "image_problem"]

log = logging.getLogger(__name__)

CHECK_MODES = ("header", "decode", "off")
BAD_IMAGE_POLICIES = ("error", "skip")
CACHE_VERSION = 1

_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"
#: Bytes at the end of a JPEG that may follow the EOI marker (some writers pad or append metadata).
TAIL_BYTES = 4096
_HEAD_BYTES = 16
#: Signatures of the other formats OpenCV decodes (BMP, TIFF, WebP, PNM, JPEG 2000).
_OTHER_MAGICS = (
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
    b"\x00\x00\x00\x0cjP  ",
)


def header_problem(head: bytes, tail: bytes, size: int) -> str | None:
    """What is wrong with an image file from its first bytes, last ``TAIL_BYTES`` bytes and size, or None."""
    if size == 0:
        return "empty file (0 bytes)"
    if head.startswith(_JPEG_SOI):
        if tail.rfind(_JPEG_EOI) < 0:
            return (
                f"truncated JPEG (no end-of-image marker in the last {min(size, TAIL_BYTES)} of {size} bytes)"
            )
        return None
    if head.startswith(_PNG_MAGIC):
        if tail.rfind(_PNG_IEND) < 0:
            return "truncated PNG (no IEND chunk)"
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return None
    if any(head.startswith(m) for m in _OTHER_MAGICS):
        return None
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF, which OpenCV does not decode; convert it to PNG or JPEG"
    return f"not an image file OpenCV reads (starts with {head[:8]!r})"


def image_problem(path: str | os.PathLike, mode: str = "header") -> str | None:
    """Check one image file (``mode`` ``header`` or ``decode``); the problem as text, or None if it is fine."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if mode == "decode":
                data = f.read()
                head, tail = data[:_HEAD_BYTES], data[-TAIL_BYTES:]
            else:
                head = f.read(_HEAD_BYTES)
                f.seek(max(0, size - TAIL_BYTES))
                tail = f.read()
    except FileNotFoundError:
        return "file not found"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    problem = header_problem(head, tail, size)
    if problem is None and mode == "decode":
        import cv2

        if cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) is None:
            problem = "could not be decoded (corrupt or unsupported format)"
    return problem


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return int(st.st_size), int(st.st_mtime_ns)


def _cache_file(cache_dir: Path, paths: list[str], mode: str) -> Path:
    digest = hashlib.sha1("\n".join([mode, *paths]).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_dir / f"images_{mode}_{digest}.json"


def _load_cache(file: Path, mode: str) -> dict[str, list]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("mode") != mode:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_atomic(file: Path, payload: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with lightning
        return None
    return tqdm(total=total, desc=desc, unit="img", disable=None, leave=False)


def check_image_files(
    paths: Iterable[str],
    mode: str = "header",
    cache_dir: str | os.PathLike | None = None,
    desc: str = "checking images",
    workers: int | None = None,
) -> dict[str, str]:
    """Check every file of ``paths``; returns ``{path: problem}`` for the bad ones (empty when all are fine).

    With ``cache_dir``, results are read from and written to a cache file for this exact file list and
    mode; an entry is reused only while the file's size and modification time are unchanged. Missing
    files are never cached. A cache directory that cannot be written costs a warning, not the run.
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"data.check_images must be one of {CHECK_MODES}, got {mode!r}")
    unique = sorted(set(map(str, paths)))
    if mode == "off" or not unique:
        return {}
    cache_file = _cache_file(Path(cache_dir), unique, mode) if cache_dir is not None else None
    cached = _load_cache(cache_file, mode) if cache_file is not None else {}

    stats = {p: _stat(p) for p in unique}
    results: dict[str, str | None] = {}
    todo = []
    for p in unique:
        st, entry = stats[p], cached.get(p)
        if st is None:
            results[p] = "file not found"
        elif isinstance(entry, list) and len(entry) == 3 and tuple(entry[:2]) == st:
            results[p] = entry[2]
        else:
            todo.append(p)
    if todo:
        bar = _progress(len(todo), desc)
        n_workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for p, problem in zip(todo, pool.map(lambda q: image_problem(q, mode), todo)):
                results[p] = problem
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if cache_file is not None:
            files = {p: [*stats[p], results[p]] for p in unique if stats[p] is not None}
            try:
                _write_atomic(cache_file, {"version": CACHE_VERSION, "mode": mode, "files": files})
            except OSError as err:
                log.warning(
                    "image check cache %s not written (%s); the next run checks again", cache_file, err
                )
    bad = {p: r for p, r in results.items() if r is not None}
    log.info(
        "%s: %d images checked (%s), %d from cache, %d bad",
        desc,
        len(unique),
        mode,
        len(unique) - len(todo),
        len(bad),
    )
    return bad
