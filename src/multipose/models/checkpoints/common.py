"""Types shared by the checkpoint readers and converters: the error classes, the conversion result, constants."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

Tensor = torch.Tensor
StateDict = dict[str, Tensor]

FORMATS = ("multipose", "lightning", "vitpose", "vitpose++", "hf", "mae")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file (and the keys)."""


class NotACheckpointError(CheckpointError):
    """The file is not a checkpoint at all (empty, text, JSON, an image, a zip or pickle of another kind)."""


class TruncatedCheckpointError(CheckpointError):
    """The file starts like a checkpoint but ends early (an interrupted copy or download)."""


class UnsafeCheckpointError(CheckpointError):
    """The file pickles Python callables that would run when loaded; ``callables`` names them."""

    def __init__(self, message: str, callables: list[str] | None = None) -> None:
        super().__init__(message)
        self.callables = list(callables or [])


class CheckpointLayoutError(CheckpointError):
    """A readable checkpoint whose contents are not what was asked for (no tensors, unknown keys, no config)."""


def compact_keys(keys: list[str], limit: int = 12) -> list[str]:
    """Collapse numeric indices (``decoder_blocks.3.attn`` -> ``decoder_blocks.*.attn``) and count repeats."""
    counts = Counter(re.sub(r"\.\d+(?=\.|$)", ".*", k) for k in keys)
    out = [p if n == 1 else f"{p} (x{n})" for p, n in counts.items()]
    return out if len(out) <= limit else [*out[:limit], f"... {len(out) - limit} more patterns"]


@dataclass
class ConversionResult:
    """A checkpoint in the multipose layout plus what the conversion did (for the printed summary).

    ``model_config`` is the dict form of :class:`multipose.models.model_config.ModelConfig`."""

    format: str
    model_config: dict[str, Any]
    state_dict: StateDict
    source: str = ""
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        bb = self.model_config["backbone"]
        dims = {**bb, **(bb.get("overrides") or {})}
        dim_text = ", ".join(f"{k} {dims[k]}" for k in ("embed_dim", "depth", "num_heads") if k in dims)
        lines = [
            f"source     : {self.source} (format {self.format})",
            f"backbone   : {bb.get('name')} ({dim_text}), img_size {tuple(bb.get('img_size') or ())}, "
            f"ffn {bb.get('ffn', 'shared')}"
            + (
                f" ({bb.get('num_experts')} experts x {bb.get('part_features')})"
                if bb.get("ffn") == "ps"
                else ""
            ),
        ]
        heads = self.model_config.get("heads", {})
        head_type = (self.model_config.get("head") or {}).get("type", "classic")
        if heads:
            for name, h in heads.items():
                lines.append(
                    f"head       : {name:<10} skeleton {h['skeleton']:<15} K {h['num_keypoints']:<4} {head_type}"
                )
        else:
            lines.append("head       : none (backbone only)")
        n_params = sum(t.numel() for t in self.state_dict.values())
        lines.append(f"tensors    : {len(self.state_dict)} ({n_params / 1e6:.2f} M values)")
        if self.dropped:
            lines.append(f"dropped    : {len(self.dropped)} keys: " + ", ".join(compact_keys(self.dropped)))
        lines.extend(f"note       : {n}" for n in self.notes)
        return "\n".join(lines)
