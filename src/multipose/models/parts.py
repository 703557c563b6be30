"""Named parts of a :class:`~multipose.models.PoseModel`, for freezing (training stages) and per-part LR.

Every parameter belongs to exactly one *leaf part*:

* ``backbone``            the shared backbone (patch embedding, attention, shared FFN weights, norms);
* ``experts.<dataset>``   the task-specific FFN experts of a ViTPose++ (MoE) backbone, expert ``i`` being the
                          ``i``-th dataset of the mix (valid names that select nothing for a dense backbone,
                          so one stage config serves both);
* ``heads.<dataset>``     one heatmap head per dataset;
* ``<child>``             any other top-level submodule of the model (e.g. a knowledge token module).

A *part name* selects a leaf (``heads.syn_coco``) or a group of leaves (``heads``, ``experts``). ``backbone``
deliberately excludes the experts, so ``frozen: [backbone]`` keeps ViTPose++'s task experts trainable and
``frozen: [backbone, experts]`` freezes the whole feature extractor. An unknown name is an error that lists the
valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["leaf_part", "part_names", "parts_of", "check_part_names", "select_parameters", "part_modules"]


def _dataset_names(model: nn.Module) -> list[str]:
    names = getattr(model, "dataset_names", None)
    if names is None:
        heads = getattr(model, "heads", None)
        names = list(heads.keys()) if isinstance(heads, nn.ModuleDict) else []
    return list(names)


def leaf_part(name: str, dataset_names: list[str]) -> str:
    """Leaf part of the parameter called ``name`` inside the model (names as ``model.named_parameters()``)."""
    parts = name.split(".")
    top = parts[0]
    if top == "heads" and len(parts) > 1:
        return f"heads.{parts[1]}"
    if top == "backbone":
        if "experts" in parts:
            pos = parts.index("experts")
            if pos + 1 < len(parts) and parts[pos + 1].isdigit():
                i = int(parts[pos + 1])
                return f"experts.{dataset_names[i]}" if i < len(dataset_names) else f"experts.{i}"
        return "backbone"
    return top


def parts_of(leaf: str) -> tuple[str, ...]:
    """The part names that select ``leaf``, most specific first: ``heads.a`` -> ``(heads.a, heads)``."""
    if "." in leaf:
        return leaf, leaf.split(".", 1)[0]
    return (leaf,)


def part_names(model: nn.Module) -> list[str]:
    """Every valid part name of ``model`` (leaves and groups), in model order."""
    datasets = _dataset_names(model)
    out: list[str] = []
    for name, _ in model.named_parameters():
        for part in reversed(parts_of(leaf_part(name, datasets))):
            if part not in out:
                out.append(part)
        if part == "backbone" and "experts" not in out:
            out += ["experts", *(f"experts.{d}" for d in datasets)]
    return out


def check_part_names(model: nn.Module, names: Iterable[str], where: str) -> list[str]:
    """``names`` as a list, or a ``ValueError`` naming the config field ``where`` and the valid part names."""
    names = [str(n) for n in names]
    valid = part_names(model)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"{where}: unknown model part(s) {unknown}; valid parts of this model are {valid} "
            "(backbone = shared backbone, experts[.<dataset>] = ViTPose++ task experts, heads[.<dataset>])"
        )
    return names


def select_parameters(model: nn.Module, names: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter in the parts ``names`` (unknown names are not checked here)."""
    wanted = set(names)
    datasets = _dataset_names(model)
    return [
        (n, p) for n, p in model.named_parameters() if wanted.intersection(parts_of(leaf_part(n, datasets)))
    ]


def part_modules(model: nn.Module, names: Iterable[str]) -> list[nn.Module]:
    """Submodules that lie entirely inside the parts ``names`` (for train/eval switching): a head, all heads, or
    the backbone when both ``backbone`` and all of its experts are selected. Drop path and dropout sit in the
    backbone's blocks around shared and expert weights alike, so a backbone whose experts still train stays in
    training mode."""
    wanted = set(names)
    datasets = _dataset_names(model)
    mods: list[nn.Module] = []
    if "heads" in wanted and isinstance(getattr(model, "heads", None), nn.Module):
        mods.append(model.heads)
    elif isinstance(getattr(model, "heads", None), nn.ModuleDict):
        mods.extend(model.heads[d] for d in datasets if f"heads.{d}" in wanted and d in model.heads)
    backbone = getattr(model, "backbone", None)
    if "backbone" in wanted and isinstance(backbone, nn.Module):
        leaves = {leaf_part(n, datasets) for n, _ in backbone.named_parameters(prefix="backbone")}
        if all(wanted.intersection(parts_of(leaf)) for leaf in leaves):
            mods.append(backbone)
    for name, child in model.named_children():
        if name not in ("heads", "backbone") and name in wanted:
            mods.append(child)
    return mods
