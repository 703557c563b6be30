"""The identity of a protocol run: the content hash of files, the hash of the composed config, a method's name."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from multipose.compare.protocol import ProtocolError

__all__ = ["config_key", "file_sha256", "method_name_from", "override_key"]


_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file (memoised per process on path, size and mtime: checkpoints are 50 MB)."""
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _SHA256_MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA256_MEMO[memo] = h.hexdigest()
    return _SHA256_MEMO[memo]


def override_key(override: str) -> str:
    """``a.b`` of ``a.b=1``, ``+a.b=1``, ``++a.b=1``, ``~a.b``."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def config_key(overrides: Sequence[str], files: Mapping[str, str | os.PathLike] | None = None) -> str:
    """sha256 of the composed, resolved ``conf/train.yaml`` under ``overrides`` - the identity of a run.

    ``files`` names config keys holding file paths (e.g. ``{"init_from": ckpt}``) whose *content* hash replaces
    the path, so a renamed checkpoint keeps its key and a replaced one gets a new key. The run directory
    (``paths.output_dir``) is not part of the key. A composition error is re-raised as :class:`ProtocolError`
    naming the overrides.
    """
    from omegaconf import OmegaConf, open_dict

    from multipose.config_validation import validate_train_config
    from multipose.utils.compose import compose_config

    try:
        cfg = compose_config("train", list(overrides))
    except Exception as err:  # Hydra's composition errors: unknown group option, bad syntax
        raise ProtocolError(
            f"the overrides {' '.join(overrides)!r} do not compose: {err}. Check the --method / --base "
            "overrides (a group option that does not exist, or a key that needs '+')."
        ) from None
    try:
        validate_train_config(cfg, check_files=False)
    except ValueError as err:  # ConfigError / DataConfigError: the message names the option
        raise ProtocolError(
            f"the overrides {' '.join(overrides)!r} are not a valid training config: {err}"
        ) from None
    with open_dict(cfg):
        cfg.paths.output_dir = "<run dir>"
        cfg.paths.work_dir = "<work dir>"
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key, path in (files or {}).items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = f"sha256:{file_sha256(path)}"
    blob = json.dumps(tree, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def method_name_from(overrides: Sequence[str]) -> str:
    """A short name for a method given as overrides: ``+bridge=acae`` -> ``acae``, ``loss.heatmap=2.0`` ->
    ``loss.heatmap-2.0``."""
    parts = []
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        parts.append(value if key.split(".")[-1] in ("bridge", "experiment", "prompt") else f"{key}-{value}")
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "-", "_".join(parts)).strip("-")
    return name[:60] or "method"
