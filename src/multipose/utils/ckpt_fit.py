"""Does a checkpoint fit the config? One paragraph naming the part that differs (backbone size, head layout,
dataset names, skeletons) instead of a state-dict dump, checked before anything is built or run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multipose.config_validation import ConfigError

# model_config fields that change tensor shapes (everything else - drop path, layer decay - does not)
BACKBONE_SHAPE_KEYS = ("name", "ffn", "overrides", "img_size", "part_features", "num_experts", "ratio")
HEAD_SHAPE_KEYS = ("type", "deconv_filters", "final_kernel")


class CheckpointMismatch(ConfigError):
    """A checkpoint whose model does not fit the composed config."""


def checkpoint_model_config(path: str | Path, field: str | None = "ckpt_path") -> dict[str, Any]:
    """The ``model_config`` stored in a Lightning training checkpoint (or a converted multipose file), read
    without running pickled code."""
    from multipose.models.checkpoints import read_checkpoint

    # tensors memory-mapped, not read: only the stored config is needed here (errors name the option)
    obj = read_checkpoint(path, field=field, mmap=True)
    config = (obj.get("hyper_parameters") or {}).get("model_config") or obj.get("model_config")
    if not isinstance(config, Mapping) or "heads" not in config:
        raise CheckpointMismatch(
            f"{path}: no model_config in the checkpoint (hyper_parameters.model_config); it was not written by "
            "multipose training or `python -m multipose.convert`"
        )
    return dict(config)


def heads_from_data(data: Any) -> dict[str, dict[str, Any]]:
    """``{dataset: {skeleton, num_keypoints}}`` the data config asks for, from the skeleton registry (no data is
    read)."""
    from multipose.skeletons.registry import get_skeleton

    heads = {}
    for name, entry in data.datasets.items():
        skeleton = get_skeleton(str(entry.skeleton))
        heads[str(name)] = {"skeleton": skeleton.name, "num_keypoints": int(skeleton.num_keypoints)}
    return heads


def _describe(head: Mapping[str, Any]) -> str:
    return f"{head.get('skeleton')} ({head.get('num_keypoints')} keypoints)"


def head_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Sentences about dataset names and, for each shared name, skeleton / keypoint count."""
    parts = []
    if list(saved) != list(wanted):
        parts.append(f"the checkpoint has heads {list(saved)} but the data mix has datasets {list(wanted)}")
    for name in saved:
        if name in wanted:
            a, b = saved[name], wanted[name]
            if (a.get("skeleton"), int(a.get("num_keypoints", -1))) != (
                b.get("skeleton"),
                int(b["num_keypoints"]),
            ):
                parts.append(
                    f"head {name!r} was trained on skeleton {_describe(a)} but the config gives {_describe(b)}"
                )
    return parts


def _fields(config: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: config.get(k) for k in keys if config.get(k) not in (None, {}, [])}


def _field_diff(
    what: str, saved: Mapping[str, Any], wanted: Mapping[str, Any], keys: tuple[str, ...]
) -> list[str]:
    a, b = _fields(saved, keys), _fields(wanted, keys)
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not changed:
        return []
    pairs = ", ".join(f"{k}={a.get(k)} vs {b.get(k)}" for k in changed)
    return [f"the {what} differs ({pairs}; checkpoint vs config)"]


def model_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    parts = _field_diff(
        "backbone", saved.get("backbone") or {}, wanted.get("backbone") or {}, BACKBONE_SHAPE_KEYS
    )
    parts += _field_diff(
        "head architecture", saved.get("head") or {}, wanted.get("head") or {}, HEAD_SHAPE_KEYS
    )
    parts += head_differences(saved.get("heads") or {}, wanted.get("heads") or {})
    return parts


def mismatch_paragraph(path: str | Path, parts: list[str], hint: str) -> str:
    return f"checkpoint {path} does not fit the config: " + "; ".join(parts) + f". {hint}"


def check_resume_fits(path: str | Path, model_config: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointMismatch` when a training checkpoint cannot be resumed with ``model_config``."""
    parts = model_differences(checkpoint_model_config(path), model_config)
    if parts:
        raise CheckpointMismatch(
            mismatch_paragraph(
                path,
                parts,
                "Resume with the run's own config (resume=<run dir>), or start a new run from these weights with "
                "init_from=<checkpoint> (loads every tensor that fits and lists the rest).",
            )
        )


def check_eval_fits(path: str | Path, data: Any) -> None:
    """Raise :class:`CheckpointMismatch` when the checkpoint's heads do not match the data mix's datasets and
    skeletons (before any data is read or model built)."""
    parts = head_differences(checkpoint_model_config(path).get("heads") or {}, heads_from_data(data))
    if parts:
        raise CheckpointMismatch(
            mismatch_paragraph(
                path,
                parts,
                "Evaluate with the training run's data config: `python -m multipose.eval run=<run dir>`, or pick "
                "the matching mix with data=<mix>.",
            )
        )
