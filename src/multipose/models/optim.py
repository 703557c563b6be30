"""Everything about the optimiser: parameter groups, LR scaling with batch size, LR schedules, one builder.

:func:`build_optimizer` returns what Lightning's ``configure_optimizers`` returns: AdamW over
:func:`param_groups_layer_decay` groups and a per-step ``LambdaLR`` (linear warm-up, then the ViTPose step
schedule or cosine annealing). Settings come from ``conf/optim`` (see the keys read in :func:`build_optimizer`).

**Layer-wise LR decay** (ViTPose ``LayerDecayOptimizerConstructor``, official
``mmcv_custom/layer_decay_optimizer_constructor.py``), for every parameter with ``requires_grad``;
``L = num_layers + 2`` where ``num_layers`` is the backbone depth:

1. No weight decay when ``param.ndim == 1``, the name ends with ``.bias``, or ``pos_embed`` is in the name
   (all LayerNorm / BatchNorm weights, all biases, the position embedding). Everything else gets
   ``weight_decay``.
2. Layer id: ``backbone.{cls_token, mask_token, pos_embed, patch_embed.*}`` -> 0; ``backbone.blocks.i.*`` -> i + 1;
   everything else (``backbone.last_norm``, every head, any other module) -> L - 1.
3. ``lr_scale = layer_decay ** (L - layer_id - 1)``: heads and last_norm x1, block i x decay^(depth - i),
   patch / position embedding x decay^(depth + 1).

**Per-part LR multipliers** (``optim.module_lr_mult``, e.g. ``{backbone: 0.1, heads: 1.0}``; part names as in
:mod:`multipose.models.parts`): the most specific part naming a parameter wins (``heads.syn_coco`` over
``heads``); parameters no key names keep x1. The multiplier is folded into ``lr_scale``; parameters whose
multiplier is not 1 get their own groups (``layer_{id}_{decay|no_decay}_{part}``), so configs without
multipliers give exactly the official groups.

Each group is a dict with ``params``, ``param_names``, ``lr`` (= ``base_lr * lr_scale``, already scaled, as the
official constructor; schedulers that multiply each group's initial lr keep the decay), ``lr_scale`` (for
schedulers that set ``lr = schedule * lr_scale`` themselves), ``lr_mult``, ``weight_decay``, ``layer_id`` and
``group_name``.

The backbone is found by the ``backbone`` component of a parameter's dotted name, so the same rule works on a
:class:`~multipose.models.PoseModel` (``backbone.blocks.0...``), on a LightningModule wrapping it
(``model.backbone.blocks.0...``), or on a bare :class:`~multipose.models.ViTPoseBackbone`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "build_optimizer",
    "layer_id_for",
    "param_groups_layer_decay",
    "resolve_epoch",
    "scale_lr",
    "warmup_cosine_schedule",
    "warmup_step_schedule",
]

_EMBED_NAMES = ("cls_token", "mask_token", "pos_embed", "patch_embed")
SCHEDULES = ("step", "cosine")


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
    return ndim <= 1 or name.endswith(".bias") or "pos_embed" in name


def _lr_mult_lookup(
    model: nn.Module, module_lr_mult: Mapping[str, float] | None
) -> Callable[[str], tuple[str, float]]:
    """``name -> (part key, multiplier)`` for ``optim.module_lr_mult`` (checked against the model's parts)."""
    if not module_lr_mult:
        return lambda name: ("", 1.0)
    from multipose.models.parts import check_part_names, leaf_part, parts_of

    check_part_names(model, module_lr_mult, "optim.module_lr_mult")
    mults = {str(k): float(v) for k, v in module_lr_mult.items()}
    bad = {k: v for k, v in mults.items() if not (v >= 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"optim.module_lr_mult values must be finite and >= 0, got {bad}")
    datasets = list(getattr(model, "dataset_names", []))

    def lookup(name: str) -> tuple[str, float]:
        for part in parts_of(leaf_part(name, datasets)):
            if part in mults:
                return part, mults[part]
        return "", 1.0

    return lookup


def param_groups_layer_decay(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    layer_decay: float,
    num_layers: int,
    module_lr_mult: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise lr decay, exactly as ViTPose (see module docstring).

    Args:
        model: the model (PoseModel, a LightningModule holding it, or the backbone itself).
        base_lr: learning rate of the top layers (heads) — e.g. 5e-4 at batch 512 (single), 1e-3 (ViTPose++).
        weight_decay: e.g. 0.1.
        layer_decay: per-layer factor (S 0.8, B 0.75, L 0.8, H 0.85 / 0.8 for ViTPose++).
        num_layers: backbone depth (12 for S/B, 24 L, 32 H).
        module_lr_mult: per-part LR multipliers (``{backbone: 0.1}``); needs ``model`` to be the PoseModel.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be the backbone depth (>= 1), got {num_layers}")
    from multipose.models.vit import ViTPoseBackbone

    root = isinstance(model, ViTPoseBackbone)
    mult_of = _lr_mult_lookup(model, module_lr_mult)
    total = num_layers + 2
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = layer_id_for(name, num_layers, backbone_is_root=root)
        decay = not _no_decay(name, param.ndim)
        part, mult = mult_of(name)
        key = f"layer_{layer_id}_{'decay' if decay else 'no_decay'}" + (f"_{part}" if mult != 1.0 else "")
        if key not in groups:
            scale = layer_decay ** (total - layer_id - 1) * mult
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": base_lr * scale,
                "lr_scale": scale,
                "lr_mult": mult,
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
        raise ValueError(
            f"batch sizes must be positive, got batch_size={batch_size}, base_batch={base_batch}"
        )
    return base_lr * batch_size / base_batch


# ------------------------------------------------------------------------------------------------ schedules


def resolve_epoch(value: float, max_epochs: int | None, what: str) -> int:
    """An epoch boundary given as a fraction of ``max_epochs`` (``0 < value < 1``, rounded to the nearest epoch)
    or as an epoch number (``value >= 1`` or ``0``). ``what`` names the config field in errors."""
    value = float(value)
    if value < 0 or not math.isfinite(value):
        raise ValueError(
            f"{what}={value}: an epoch boundary must be >= 0 (an epoch, or a fraction < 1 of max_epochs)"
        )
    if value >= 1 or value == 0:
        if value != int(value):
            raise ValueError(
                f"{what}={value}: give a whole epoch number, or a fraction < 1 of trainer.max_epochs"
            )
        return int(value)
    if not max_epochs or max_epochs < 1:
        raise ValueError(
            f"{what}={value} is a fraction of trainer.max_epochs, but max_epochs is {max_epochs}; "
            "set trainer.max_epochs or give the epoch number"
        )
    return int(round(value * max_epochs))


def _linear_warmup(step: int, warmup_iters: int, warmup_ratio: float) -> float:
    """mmcv's linear warm-up factor: from ``warmup_ratio`` at step 0 to 1 at ``warmup_iters``."""
    if warmup_iters > 0 and step < warmup_iters:
        return 1 - (1 - step / warmup_iters) * (1 - warmup_ratio)
    return 1.0


def warmup_step_schedule(
    warmup_iters: int, warmup_ratio: float, milestones: Sequence[int], gamma: float
) -> Callable[[int], float]:
    """LR multiplier per optimiser step: linear warm-up from ``warmup_ratio`` over ``warmup_iters`` steps
    (mmcv's linear warm-up), then ×``gamma`` at each milestone step (the ViTPose schedule)."""
    milestones = sorted(milestones)

    def factor(step: int) -> float:
        return _linear_warmup(step, warmup_iters, warmup_ratio) * gamma ** sum(step >= m for m in milestones)

    return factor


def warmup_cosine_schedule(
    warmup_iters: int, warmup_ratio: float, total_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """Linear warm-up, then cosine annealing from 1 to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        progress = min(max(step - warmup_iters, 0) / max(total_steps - warmup_iters, 1), 1.0)
        cosine = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return _linear_warmup(step, warmup_iters, warmup_ratio) * cosine

    return factor


def lr_schedule(
    cfg: Mapping[str, Any], *, total_steps: int, max_epochs: int | None
) -> Callable[[int], float]:
    """The per-step LR factor of ``conf/optim`` settings. Milestones are epochs (or fractions of ``max_epochs``)
    converted to steps with ``total_steps // max_epochs`` steps per epoch."""
    epochs = max(int(max_epochs or 1), 1)
    steps_per_epoch = max(total_steps // epochs, 1) if max_epochs and max_epochs > 0 else total_steps
    milestones = [
        resolve_epoch(m, epochs, "optim.milestones") * steps_per_epoch for m in cfg.get("milestones", [])
    ]
    warmup = {
        "warmup_iters": int(cfg.get("warmup_iters", 500)),
        "warmup_ratio": float(cfg.get("warmup_ratio", 0.001)),
    }
    kind = cfg.get("schedule", "step")
    if kind == "step":
        return warmup_step_schedule(**warmup, milestones=milestones, gamma=float(cfg.get("gamma", 0.1)))
    if kind == "cosine":
        return warmup_cosine_schedule(
            **warmup, total_steps=total_steps, min_ratio=float(cfg.get("min_lr_ratio", 0.0))
        )
    raise ValueError(f"optim.schedule={kind!r} is unknown; choose one of {list(SCHEDULES)} (step = ViTPose)")


# ------------------------------------------------------------------------------------------------ builder


def build_optimizer(
    model: nn.Module,
    optim_cfg: Mapping[str, Any],
    *,
    batch_size: int | None,
    total_steps: int,
    max_epochs: int | None,
    extra_modules: Mapping[str, nn.Module] | None = None,
) -> dict[str, Any]:
    """AdamW + per-step LR schedule for ``model``, in the form Lightning's ``configure_optimizers`` returns.

    Args:
        model: the :class:`~multipose.models.PoseModel` (its ``backbone.depth`` sets the layer-decay depth).
        optim_cfg: ``conf/optim`` settings: ``lr``, ``weight_decay``, ``betas``, ``layer_decay``,
            ``module_lr_mult``, ``scale_lr`` + ``base_batch_size``, ``schedule`` (``step`` | ``cosine``),
            ``warmup_iters``, ``warmup_ratio``, ``milestones``, ``gamma``, ``min_lr_ratio``.
        batch_size: the global batch per optimiser step, for ``scale_lr`` (``None``: no scaling).
        total_steps: optimiser steps of the whole run (``trainer.estimated_stepping_batches``).
        max_epochs: ``trainer.max_epochs`` (milestones given as fractions are fractions of it).
        extra_modules: further trainable modules outside the model (the bridges, ``{name: module}``): one group
            each (and one without weight decay for biases / norms / 1-d parameters) at the base lr times
            ``module_lr_mult["bridges.<name>"]`` (default 1), no layer decay.
    """
    cfg = optim_cfg
    lr = float(cfg.get("lr", 5e-4))
    if cfg.get("scale_lr", False) and batch_size is not None:
        lr = lr * float(batch_size) / float(cfg.get("base_batch_size", 512))
    backbone = getattr(model, "backbone", model)
    groups = param_groups_layer_decay(
        model,
        base_lr=lr,
        weight_decay=float(cfg.get("weight_decay", 0.1)),
        layer_decay=float(cfg.get("layer_decay", 1.0)),
        num_layers=int(backbone.depth),
        module_lr_mult={
            k: v for k, v in (cfg.get("module_lr_mult") or {}).items() if not k.startswith("bridges.")
        }
        or None,
    )
    mults = dict(cfg.get("module_lr_mult") or {})
    for name, module in dict(extra_modules or {}).items():
        mult = float(mults.get(f"bridges.{name}", 1.0))
        for decay in (True, False):
            named = [
                (n, p)
                for n, p in module.named_parameters()
                if p.requires_grad and decay != _no_decay(n, p.ndim)
            ]
            if named:
                key = f"bridges.{name}_{'decay' if decay else 'no_decay'}"
                groups.append(
                    {
                        "params": [p for _, p in named],
                        "param_names": [f"bridges.{name}.{n}" for n, _ in named],
                        "lr": lr * mult,
                        "lr_scale": mult,
                        "lr_mult": mult,
                        "weight_decay": float(cfg.get("weight_decay", 0.1)) if decay else 0.0,
                        "layer_id": int(backbone.depth) + 1,
                        "group_name": key,
                    }
                )
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))))
    schedule = lr_schedule(cfg, total_steps=int(total_steps), max_epochs=max_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
