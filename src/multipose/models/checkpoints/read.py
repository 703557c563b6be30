"""Safe checkpoint reading: every checkpoint multipose opens goes through :func:`read_checkpoint`.

Nothing here executes pickled code, whatever the installed torch's ``weights_only`` default is. Two layers:
a pickle's globals are listed from its opcodes *before* anything is unpickled, and a file naming any callable
outside torch's own tensor-rebuilding allow-list (plus numpy scalars/arrays, which mmcv stores in ``meta``) is
refused with the callable's name; then ``torch.load`` runs with ``weights_only=True`` passed explicitly (so the
safety does not depend on torch >= 2.6 making it the default).

Each failure is one exception class with one message that names the file:

- :class:`NotACheckpointError`: empty, text, JSON, an image, a zip or plain pickle that ``torch.save`` did not
  write, unrecognised bytes;
- :class:`TruncatedCheckpointError`: a torch zip without its end record, a pickle stream or safetensors data
  that stops early;
- :class:`UnsafeCheckpointError`: the pickle would call e.g. ``posix.system``;
- :class:`CheckpointLayoutError`: a readable file without the expected contents (no tensor dict, ...).
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import importlib
import io
import json
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from multipose.models.checkpoints.common import (
    CheckpointError,
    CheckpointLayoutError,
    NotACheckpointError,
    StateDict,
    Tensor,
    TruncatedCheckpointError,
    UnsafeCheckpointError,
)

__all__ = [
    "read_checkpoint",
    "unwrap_state_dict",
    "is_state_dict",
    "pickle_globals",
    "SAFETENSORS_METADATA_KEY",
]

SAFETENSORS_METADATA_KEY = "multipose"

# Globals that only rebuild plain data (numpy scalars/arrays inside mmcv ``meta``); nothing here runs code.
_DATA_ONLY_GLOBALS = (
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
)
# torch's legacy (non-zip) format: pickled magic number, protocol, sys info, then the object itself
_LEGACY_PICKLES = 4
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
}


def _label(path: Path | str, field: str | None) -> str:
    return f"{field}={path}" if field else str(path)


# ------------------------------------------------------------------------------------------- sniffing bytes


def _describe_bytes(head: bytes) -> str | None:
    """What a file that is not a torch/safetensors file is, from its first bytes (None: a zip or a pickle)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return None
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return None
    for magic, what in (
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x89PNG", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"%PDF", "a PDF document"),
        (b"\x1f\x8b", "a gzip archive (unpack it first)"),
        (b"\x89HDF", "an HDF5 file (Keras/TensorFlow weights?)"),
    ):
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # a multi-byte character cut at the end of the sniffed block is fine
        text = head[: err.start].decode("utf-8") if err.start > len(head) - 4 else None
    if text is not None and "\x00" not in text:
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            return "JSON text (a config or annotation file?)"
        first = stripped.splitlines()[0][:60] if stripped else ""
        return f"a text file (first line {first!r})"
    if head[:1] == b"\x80":
        return "a pickle stream of an unknown protocol"
    return f"unrecognised binary data (first bytes {head[:8].hex(' ')})"


# ------------------------------------------------------------------------------------------ pickle globals


def _py3_name(module: str, name: str = "") -> str:
    """``module.name`` as Python 3 imports it (protocol-2 pickles say ``__builtin__`` for ``builtins``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def pickle_globals(stream: BinaryIO, max_pickles: int = 1, ints: list[int] | None = None) -> list[str]:
    """The ``module.name`` of every global (callable or class) the next ``max_pickles`` pickles in ``stream``
    would import, read from the opcodes without unpickling anything (``ints`` collects integer constants).

    Raises :class:`EOFError` when the stream ends inside a pickle and :class:`ValueError` when it is not one.
    """
    found: list[str] = []
    for _ in range(max_pickles):
        strings: list[str] = []
        memo: dict[int, str | None] = {}
        last: str | None = None
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                pushed: str | None = None
                if name in ("GLOBAL", "INST"):
                    found.append(_py3_name(*str(arg).split(" ", 1)))
                elif name == "STACK_GLOBAL":
                    found.append(_py3_name(*strings[-2:]) if len(strings) >= 2 else "<unknown STACK_GLOBAL>")
                elif name in _STRING_OPS:
                    pushed = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
                    strings.append(pushed)
                elif name in ("EXT1", "EXT2", "EXT4"):
                    found.append(f"<copyreg extension {arg}>")
                elif ints is not None and isinstance(arg, int) and name.startswith(("LONG", "INT", "BININT")):
                    ints.append(arg)
                elif name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = last
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    pushed = memo.get(int(arg))
                    if pushed is not None:
                        strings.append(pushed)
                if name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                    last = pushed
        except ValueError as err:
            if "exhausted" in str(err) or "remain" in str(err) or "not enough" in str(err):
                raise EOFError(str(err)) from err
            raise
    return found


def _allowed_globals() -> set[str] | None:
    """torch's weights-only allow-list (tensor/storage rebuilders, dtypes, OrderedDict, ...), or None if this
    torch does not expose it (the check is then left to ``torch.load(weights_only=True)``)."""
    try:
        from torch import _weights_only_unpickler as wou

        allowed = set(wou._get_allowed_globals())
    except (ImportError, AttributeError):
        return None
    try:
        allowed |= {
            f"{g.__module__}.{g.__qualname__}"
            for g in torch.serialization.get_safe_globals()
            if hasattr(g, "__qualname__")
        }
    except AttributeError:
        pass
    return allowed


def _resolve_data_global(name: str) -> Any | None:
    """The object of an allow-listed data-only global (numpy scalar/dtype/ndarray), else None."""
    if not (name in _DATA_ONLY_GLOBALS or (name.startswith("numpy.dtypes.") and name.endswith("DType"))):
        return None
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def _numpy_dtype_classes() -> list[type]:
    """numpy's dtype classes (``numpy.dtypes.Float64DType``, ...): needed to rebuild numpy scalars."""
    try:
        import numpy as np

        return [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    except (ImportError, AttributeError):
        return []


def _refuse_unsafe(label: str, names: list[str]) -> list[Any]:
    """Raise :class:`UnsafeCheckpointError` for globals outside the allow-lists; return the numpy objects to
    allow for this load."""
    allowed = _allowed_globals()
    extra: list[Any] = []
    refused: list[str] = []
    for name in dict.fromkeys(names):
        if allowed is not None and name in allowed:
            continue
        obj = _resolve_data_global(name)
        if obj is not None:
            extra.append(obj)
        elif allowed is not None:
            refused.append(name)
    if refused:
        raise UnsafeCheckpointError(
            f"{label}: refusing to load: the file pickles Python callables that would run when it is loaded: "
            f"{', '.join(refused)}. multipose reads only tensors and plain containers and never unpickles code. "
            f"If you trust the file, re-save its weights as a plain state dict (torch.save(model.state_dict())) or "
            f".safetensors in the environment that wrote it.",
            refused,
        )
    return [*extra, *_numpy_dtype_classes()] if extra else []


# -------------------------------------------------------------------------------------------- the formats


def _truncated(label: str, size: int, detail: str) -> TruncatedCheckpointError:
    return TruncatedCheckpointError(
        f"{label}: the checkpoint is truncated ({detail}; the file has {size} bytes): the copy or download was "
        f"cut short. Copy the file again."
    )


def _not_a_checkpoint(label: str, what: str) -> NotACheckpointError:
    return NotACheckpointError(
        f"{label}: not a checkpoint: {what}. multipose reads files written by torch.save (.pt/.pth/.ckpt) and "
        f".safetensors files; check the path."
    )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n < 100_000_000 and n != size


def _read_safetensors(path: Path, label: str, head: bytes, size: int) -> dict[str, Any]:
    if size < 8:
        raise _truncated(label, size, "shorter than the 8-byte safetensors header length")
    (n,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{":
        raise _not_a_checkpoint(label, "a .safetensors name but no safetensors header")
    if 8 + n > size:
        raise _truncated(label, size, f"the safetensors header says {n} header bytes")
    with path.open("rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _not_a_checkpoint(label, f"the safetensors header is not valid JSON ({err})") from None
    ends = [
        int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and "data_offsets" in v
    ]
    if ends and 8 + n + max(ends) > size:
        raise _truncated(label, size, f"the tensors need {8 + n + max(ends)} bytes")
    from safetensors import safe_open

    tensors: StateDict = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as st:
            metadata = st.metadata() or {}
            for key in st.keys():
                tensors[key] = st.get_tensor(key)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type
        raise _not_a_checkpoint(label, f"safetensors could not read it ({err})") from err
    if SAFETENSORS_METADATA_KEY in metadata:
        try:
            info = json.loads(metadata[SAFETENSORS_METADATA_KEY])
        except json.JSONDecodeError as err:
            raise CheckpointLayoutError(
                f"{label}: metadata '{SAFETENSORS_METADATA_KEY}' is not valid JSON"
            ) from err
        return {**info, "state_dict": tensors}
    return {"state_dict": tensors, "metadata": dict(metadata)}


def _scan_torch_file(path: Path, label: str, head: bytes, size: int) -> tuple[list[str], bool]:
    """Globals of a torch.save file (zip or legacy pickle format) and whether it is a zip."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        if not zipfile.is_zipfile(path):
            raise _truncated(label, size, "a zip archive without its end record")
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
                if not pkl:
                    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
                    raise _not_a_checkpoint(
                        label, f"a zip archive ({shown or 'empty'}) that torch.save did not write"
                    )
                data = zf.read(pkl[0])
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise _truncated(label, size, f"the zip archive is damaged: {err}") from err
        try:
            return pickle_globals(io.BytesIO(data)), True
        except EOFError:
            raise _truncated(label, size, "its data.pkl stops early") from None
        except ValueError as err:
            raise _not_a_checkpoint(label, f"its data.pkl is not a pickle ({err})") from None
    with path.open("rb") as f:
        ints: list[int] = []
        try:
            first = pickle_globals(f, 1, ints)
            if _TORCH_MAGIC not in ints:  # torch's legacy format starts with a pickled magic number
                _refuse_unsafe(label, first)
                raise _not_a_checkpoint(label, "a pickle that torch.save did not write (plain pickle.dump?)")
            rest = pickle_globals(f, _LEGACY_PICKLES - 1)
        except EOFError:
            raise _truncated(label, size, "the pickle stream stops early") from None
        except ValueError as err:
            if isinstance(err, CheckpointError):
                raise
            raise _not_a_checkpoint(label, f"bytes that are not a pickle ({err})") from None
    return rest, False


def read_checkpoint(path: str | Path, *, field: str | None = None, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint without executing pickled code; ``field`` (e.g. ``"ckpt_path"``) prefixes messages.

    ``.safetensors`` files give ``{"state_dict": tensors, "metadata": {...}}`` (a multipose file becomes the
    multipose dict again). Everything else must be a ``torch.save`` file holding a dict; a bare state dict
    comes back as is (see :func:`unwrap_state_dict`). A directory means its first ``*.safetensors`` / ``*.bin``.
    ``mmap`` maps zip-format tensors instead of reading them (cheap pre-flight checks of large files).
    Raises one of the :class:`CheckpointError` subclasses listed in the module docstring.
    """
    path = Path(path)
    label = _label(path, field)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        if not candidates:
            raise CheckpointError(f"{label}: the directory holds no *.safetensors or *.bin weights file")
        path = candidates[0]
        label = _label(path, field)
    if not path.is_file():
        raise CheckpointError(f"{label}: no such checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise _not_a_checkpoint(label, "the file is empty (0 bytes)")
    with path.open("rb") as f:
        head = f.read(4096)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        return _read_safetensors(path, label, head, size)
    what = _describe_bytes(head)
    if what is not None:
        raise _not_a_checkpoint(label, what)
    names, is_zip = _scan_torch_file(path, label, head, size)
    extra = _refuse_unsafe(label, names)
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; older: numpy meta is refused
    try:
        with allow(extra) if allow is not None and extra else contextlib.nullcontext():
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as err:
        if "truncated" in str(err):
            raise _truncated(label, size, str(err)) from None
        reason = str(err).split("WeightsUnpickler error:")[-1].split(". Please")[0].strip()
        raise UnsafeCheckpointError(
            f"{label}: refusing to load: torch's weights-only unpickler rejected it ({reason}). multipose reads "
            f"only tensors and plain containers; re-save the weights as a plain state dict or .safetensors.",
        ) from None
    except (EOFError, RuntimeError, OSError) as err:
        raise _truncated(label, size, f"torch.load: {str(err).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise CheckpointLayoutError(
            f"{label}: a torch.save file holding a {type(obj).__name__}, not a dict of tensors (a state dict or a "
            f"training checkpoint)"
        )
    return obj


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def unwrap_state_dict(obj: dict[str, Any], path: str | Path = "<checkpoint>") -> StateDict:
    """Find the tensors in a checkpoint dict (``state_dict`` / ``model`` / ``module`` / bare) and strip a
    leading ``module.`` (DDP) from every key."""
    sd: Any = obj
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
            break
    if not isinstance(sd, dict):
        raise CheckpointLayoutError(
            f"{path}: no state dict found (looked for 'state_dict', 'model', 'module')"
        )
    non_tensor = sorted(k for k, v in sd.items() if not isinstance(v, Tensor))
    if non_tensor:
        raise CheckpointLayoutError(
            f"{path}: the state dict holds non-tensor entries {non_tensor[:8]}; is this a checkpoint of "
            f"another kind? Top-level keys: {sorted(obj)[:12]}"
        )
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)
