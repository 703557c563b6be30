"""Layer-wise learning-rate decay parameter groups (ViTPose ``LayerDecayOptimizerConstructor``).

Rule (official ``mmcv_custom/layer_decay_optimizer_constructor.py``), for every parameter with
``requires_grad``; ``L = num_layers + 2`` where ``num_layers`` is the backbone depth:

1. No weight decay when ``param.ndim == 1``, the name ends with ``.bias``, or ``pos_embed`` is in the name
   (all LayerNorm / BatchNorm weights, all biases, the position embedding). Everything else gets
   ``weight_decay``.
2. Layer id: ``backbone.{cls_token, mask_token, pos_embed, patch_embed.*}`` -> 0; ``backbone.blocks.i.*`` -> i + 1;
   everything else (``backbone.last_norm``, every head, any other module) -> L - 1.
3. ``lr_scale = layer_decay ** (L - layer_id - 1)``: heads and last_norm x1, block i x decay^(depth - i),
   patch / position embedding x decay^(depth + 1).

Each group is a dict with ``params``, ``param_names``, ``lr`` (= ``base_lr * lr_scale``, already scaled, as the
official constructor; schedulers that multiply each group's initial lr keep the decay), ``lr_scale`` (for
schedulers that set ``lr = schedule * lr_scale`` themselves), ``weight_decay``, ``layer_id`` and ``group_name``
(``layer_{id}_{decay|no_decay}``).

The backbone is found by the ``backbone`` component of a parameter's dotted name, so the same rule works on a
:class:`~multipose.models.PoseModel` (``backbone.blocks.0...``), on a LightningModule wrapping it
(``model.backbone.blocks.0...``), or on a bare :class:`~multipose.models.ViTPoseBackbone`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["param_groups_layer_decay", "layer_id_for", "scale_lr"]

_EMBED_NAMES = ("cls_token", "mask_token", "pos_embed", "patch_embed")


def layer_id_for(name: str, num_layers: int, backbone_is_root: bool = False) -> int:
    """Layer id of parameter ``name`` (see module docstring); ``backbone_is_root`` when the model *is* the backbone."""
    parts = name.split(".")
    if backbone_is_root:
        rest = parts
    elif "backbone" in parts:
        rest = parts[parts.index("backbone") + 1 :]
    else:
        return num_layers + 1
    if rest and rest[0] in _EMBED_NAMES:
        return 0
    if len(rest) > 1 and rest[0] == "blocks":
        block = int(rest[1])
        if block >= num_layers:
            raise ValueError(
                f"parameter {name!r} is in block {block} but num_layers={num_layers}; pass the backbone depth"
            )
        return block + 1
    return num_layers + 1


def _no_decay(name: str, ndim: int) -> bool:
    return ndim == 1 or name.endswith(".bias") or "pos_embed" in name


def param_groups_layer_decay(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    layer_decay: float,
    num_layers: int,
) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise lr decay, exactly as ViTPose (see module docstring).

    Args:
        model: the model (PoseModel, a LightningModule holding it, or the backbone itself).
        base_lr: learning rate of the top layers (heads) — e.g. 5e-4 at batch 512 (single), 1e-3 (ViTPose++).
        weight_decay: e.g. 0.1.
        layer_decay: per-layer factor (S 0.8, B 0.75, L 0.8, H 0.85 / 0.8 for ViTPose++).
        num_layers: backbone depth (12 for S/B, 24 L, 32 H).
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be the backbone depth (>= 1), got {num_layers}")
    from multipose.models.vit import ViTPoseBackbone

    root = isinstance(model, ViTPoseBackbone)
    total = num_layers + 2
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = layer_id_for(name, num_layers, backbone_is_root=root)
        decay = not _no_decay(name, param.ndim)
        key = f"layer_{layer_id}_{'decay' if decay else 'no_decay'}"
        if key not in groups:
            scale = layer_decay ** (total - layer_id - 1)
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": base_lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
                "layer_id": layer_id,
                "group_name": key,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return sorted(groups.values(), key=lambda g: (g["layer_id"], g["group_name"]))


def scale_lr(base_lr: float, batch_size: int, base_batch: int = 512) -> float:
    """Linear lr scaling with the total batch size: ``base_lr * batch_size / base_batch`` (mmpose
    ``auto_scale_lr``; ViTPose's 5e-4 is for a total batch of 512)."""
    if batch_size <= 0 or base_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got batch_size={batch_size}, base_batch={base_batch}")
    return base_lr * batch_size / base_batch
