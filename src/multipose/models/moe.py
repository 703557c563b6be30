"""Feed-forward (FFN) variants of a ViTPose / ViTPose++ transformer block.

Four variants, selected by the backbone option ``ffn`` (ViTPose++ paper, Sec. 3.5 and Sec. 4.4.1 / Table 11):

``shared``
    A plain timm :class:`~timm.layers.Mlp` (``fc1`` -> GELU -> ``fc2``), the same for every task.
    With several heads this is the "multi-task baseline" of Table 11.
``ps`` (:class:`PartiallySharedMlp`, PS-FFN, the ViTPose++ default)
    ``fc1`` (C -> 4C) and GELU are shared; the second linear layer is split along its output channels into a
    shared part ``fc2`` (4C -> C-p) and one task-specific part per task ``experts.k`` (4C -> p). The outputs are
    concatenated shared-first: ``cat([fc2(h), experts[t](h)], -1)``. ``p = part_features = alpha * C``
    (alpha = 0.25 by default: S 96, B 192, L 256, H 320).
``independent`` (:class:`IndependentMlp`, I-FFN)
    One complete FFN per task (``experts.k.fc1`` / ``experts.k.fc2``); nothing in the FFN is shared.
``shared_independent`` (:class:`SharedIndependentMlp`, IS-FFN)
    A shared FFN (``fc1`` / ``fc2``) plus one independent FFN per task (``experts.k.*``); their outputs are
    summed. The paper initialises the independent FFNs "with zero"; zeroing both of their layers would make
    them untrainable (GELU(0) = 0 gives ``fc2`` no gradient and ``fc2 = 0`` gives ``fc1`` none), so only the
    independent ``fc2`` is zeroed: the branch starts as an exact no-op and still learns.

Routing is hard and per sample: sample ``b`` uses task ``dataset_idx[b]`` (its index in the data mix); there is
no gate and no balancing loss. The official code runs every expert on the whole batch and masks the result. Here
each sample goes only through its own expert: the batch is sorted by task once (:class:`TaskRouting`), each
task's contiguous slice goes through its expert, and the slices are concatenated back. The result equals the
dense-masked formulation up to float rounding.

Unused experts and DDP: with ``ddp_safe=True`` (default) every expert is also applied to its slice when the
slice is empty (zero samples), so every expert parameter receives a gradient of exactly zero in every step and
DDP runs without ``find_unused_parameters``. That matches the official dense-masked code, which also gives
absent tasks zero gradients (AdamW still applies its momentum and weight decay to them, as there). With
``ddp_safe=False`` absent experts are skipped and their ``.grad`` stays ``None``.

Note: the paper's Eq. (10) writes ReLU after the shared linear layer; the released code (and this module)
uses GELU, as in the MAE-pretrained ViT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from timm.layers import Mlp
from torch import Tensor, nn

__all__ = [
    "FFN_TYPES",
    "TaskRouting",
    "PartiallySharedMlp",
    "IndependentMlp",
    "SharedIndependentMlp",
    "build_ffn",
    "merge_ffn",
    "resolve_part_features",
]

FFN_TYPES = ("shared", "ps", "independent", "shared_independent")


@dataclass(frozen=True)
class TaskRouting:
    """How a batch is split by task.

    Attributes:
        counts: number of samples of each task, in task order, for a batch that is **sorted by task**
            (tasks 0..T-1 each occupy one contiguous slice, possibly empty).
        order: permutation of the original batch that sorts it by task (stable); ``None`` when the batch is
            already sorted.
        inverse: the inverse permutation (``sorted[inverse] == original``); ``None`` with ``order``.
    """

    counts: tuple[int, ...]
    order: Tensor | None = None
    inverse: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.counts)

    @classmethod
    def from_dataset_idx(
        cls, dataset_idx: Tensor, num_tasks: int, batch_size: int | None = None
    ) -> TaskRouting:
        """Build the routing of a batch from its ``dataset_idx`` ([B] int64, values in ``[0, num_tasks)``).

        One host-device synchronisation per call (the per-task counts must be Python ints for slicing).
        """
        if not isinstance(dataset_idx, Tensor):
            raise TypeError(
                f"dataset_idx must be a torch.Tensor of shape [B], got {type(dataset_idx).__name__}"
            )
        if dataset_idx.ndim != 1 or dataset_idx.dtype.is_floating_point or dataset_idx.dtype == torch.bool:
            raise ValueError(
                f"dataset_idx must be a 1-D integer tensor [B], got shape {tuple(dataset_idx.shape)} "
                f"and dtype {dataset_idx.dtype}"
            )
        if batch_size is not None and dataset_idx.numel() != batch_size:
            raise ValueError(
                f"dataset_idx has {dataset_idx.numel()} entries but the batch has {batch_size} samples"
            )
        tasks = torch.arange(num_tasks, device=dataset_idx.device)
        counts = (dataset_idx.unsqueeze(1) == tasks).sum(0)
        unsorted = (dataset_idx[1:] < dataset_idx[:-1]).any().long().view(1)
        stats = torch.cat([counts, unsorted]).tolist()  # the single sync
        counts_l, is_unsorted = tuple(int(c) for c in stats[:-1]), bool(stats[-1])
        if sum(counts_l) != dataset_idx.numel():
            bad = sorted({int(v) for v in dataset_idx.tolist() if not 0 <= int(v) < num_tasks})
            raise ValueError(
                f"dataset_idx contains {bad}, outside [0, {num_tasks}): the model has {num_tasks} tasks/experts "
                "(one per dataset of the mix, in mix order)"
            )
        if not is_unsorted:
            return cls(counts_l)
        order = torch.argsort(dataset_idx, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return cls(counts_l, order, inverse)

    def sort(self, x: Tensor) -> Tensor:
        """Reorder a batch-first tensor into task-sorted order."""
        return x if self.order is None else x.index_select(0, self.order)

    def unsort(self, x: Tensor) -> Tensor:
        """Undo :meth:`sort`."""
        return x if self.inverse is None else x.index_select(0, self.inverse)

    def sorted(self) -> TaskRouting:
        """The same routing for a batch that has already been sorted."""
        return TaskRouting(self.counts)


class _RoutedMlp(nn.Module):
    """Base for task-routed FFNs: ``forward(x, route)`` with ``route`` a ``[B]`` tensor or a TaskRouting.

    With a tensor the batch is sorted, processed and unsorted here; with a :class:`TaskRouting` the input is
    assumed to be sorted already (the backbone sorts once for all blocks).
    """

    routed = True
    num_experts: int
    ddp_safe: bool

    def _init_common(
        self, in_features, hidden_features, num_experts, ddp_safe, norm_layer, bias, drop
    ) -> int:
        """Shared constructor checks and attributes of the routed FFNs; returns the hidden width (4C default)."""
        _check_block_kwargs(norm_layer, bias, drop)
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        hidden_features = hidden_features or 4 * in_features
        self.in_features, self.hidden_features = in_features, hidden_features
        self.num_experts, self.ddp_safe = num_experts, ddp_safe
        return hidden_features

    def forward(self, x: Tensor, route: Tensor | TaskRouting | None) -> Tensor:
        if route is None:
            if self.num_experts != 1:
                raise ValueError(
                    f"{type(self).__name__} has {self.num_experts} task experts and needs dataset_idx "
                    "(one index per sample); pass dataset_idx or merge the experts for one task first"
                )
            route = TaskRouting((x.shape[0],))
        if isinstance(route, TaskRouting):
            if route.num_tasks != self.num_experts:
                raise ValueError(
                    f"routing has {route.num_tasks} tasks but the FFN has {self.num_experts} experts"
                )
            if sum(route.counts) != x.shape[0]:
                raise ValueError(f"routing covers {sum(route.counts)} samples but the input has {x.shape[0]}")
            return self._forward_sorted(x, route)
        routing = TaskRouting.from_dataset_idx(route, self.num_experts, x.shape[0])
        return routing.unsort(self._forward_sorted(routing.sort(x), routing.sorted()))

    def _per_task(self, x: Tensor, routing: TaskRouting, experts: nn.ModuleList) -> Tensor:
        """Apply ``experts[t]`` to task t's slice of the (sorted) batch and concatenate the slices."""
        outs = [
            expert(chunk)
            for expert, chunk, n in zip(experts, torch.split(x, list(routing.counts), dim=0), routing.counts)
            if n > 0 or self.ddp_safe
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)

    def _forward_sorted(self, x: Tensor, routing: TaskRouting) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _check_block_kwargs(norm_layer, bias, drop) -> None:
    # timm's Block passes these to its mlp_layer; the ViTPose FFN uses none of them.
    if norm_layer is not None or bias is not True or drop not in (0, 0.0):
        raise ValueError(
            "task-routed FFNs support only norm_layer=None, bias=True, drop=0 (the ViTPose setting)"
        )


def resolve_part_features(
    embed_dim: int, part_features: int | None = None, part_ratio: float | None = None
) -> int:
    """Width ``p`` of the task-specific slice of a PS-FFN: explicit ``part_features``, else ``part_ratio * C``
    (alpha), else ``C / 4`` (the released ViTPose++ checkpoints: S 96, B 192, L 256, H 320)."""
    if part_features is not None and part_ratio is not None:
        raise ValueError("give either part_features or part_ratio (alpha), not both")
    if part_features is None:
        ratio = 0.25 if part_ratio is None else float(part_ratio)
        part_features = round(embed_dim * ratio)
    if not 0 < part_features < embed_dim:
        raise ValueError(
            f"part_features must be in (0, embed_dim={embed_dim}), got {part_features}; "
            "use ffn='independent' for a fully task-specific FFN"
        )
    return int(part_features)


class PartiallySharedMlp(_RoutedMlp):
    """ViTPose++ PS-FFN (official ``MoEMlp``; paper Sec. 3.5, Eq. 10-11, Fig. 4).

    Parameters (official names): ``fc1`` Linear(C, hidden), ``fc2`` Linear(hidden, C - p) shared,
    ``experts.k`` Linear(hidden, p) for task k. Output channels: the C - p shared ones first, then the p
    task-specific ones.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        *,
        num_experts: int,
        part_features: int,
        act_layer: type[nn.Module] = nn.GELU,
        ddp_safe: bool = True,
        norm_layer=None,
        bias=True,
        drop=0.0,
        device=None,
        dtype=None,
        **_: object,
    ) -> None:
        super().__init__()
        hidden_features = self._init_common(
            in_features, hidden_features, num_experts, ddp_safe, norm_layer, bias, drop
        )
        part_features = resolve_part_features(in_features, part_features)
        dd = {"device": device, "dtype": dtype}
        self.part_features = part_features
        self.fc1 = nn.Linear(in_features, hidden_features, **dd)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features - part_features, **dd)
        self.experts = nn.ModuleList(
            nn.Linear(hidden_features, part_features, **dd) for _ in range(num_experts)
        )

    def _forward_sorted(self, x: Tensor, routing: TaskRouting) -> Tensor:
        h = self.act(self.fc1(x))
        shared = self.fc2(h)
        specific = self._per_task(h, routing, self.experts)
        return torch.cat([shared, specific], dim=-1)

    @torch.no_grad()
    def init_from_dense(self, dense: Mapping[str, Tensor]) -> None:
        """Initialise from a dense FFN state (``fc1.weight``, ``fc1.bias``, ``fc2.weight``, ``fc2.bias``), e.g.
        MAE weights: ``fc1`` copied, ``fc2`` keeps the first C - p output rows and every expert gets the last
        p rows (official ``load_checkpoint`` for ViTMoE), so all experts start identical."""
        c_shared = self.in_features - self.part_features
        self.fc1.weight.copy_(dense["fc1.weight"])
        self.fc1.bias.copy_(dense["fc1.bias"])
        self.fc2.weight.copy_(dense["fc2.weight"][:c_shared])
        self.fc2.bias.copy_(dense["fc2.bias"][:c_shared])
        for expert in self.experts:
            expert.weight.copy_(dense["fc2.weight"][c_shared:])
            expert.bias.copy_(dense["fc2.bias"][c_shared:])


class IndependentMlp(_RoutedMlp):
    """I-FFN (ViTPose++ Sec. 4.4.1, Table 11): an independent full FFN per task, ``experts.k.{fc1,fc2}``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        *,
        num_experts: int,
        act_layer: type[nn.Module] = nn.GELU,
        ddp_safe: bool = True,
        norm_layer=None,
        bias=True,
        drop=0.0,
        device=None,
        dtype=None,
        **_: object,
    ) -> None:
        super().__init__()
        hidden_features = self._init_common(
            in_features, hidden_features, num_experts, ddp_safe, norm_layer, bias, drop
        )
        self.experts = nn.ModuleList(
            Mlp(in_features, hidden_features, act_layer=act_layer, device=device, dtype=dtype)
            for _ in range(num_experts)
        )

    def _forward_sorted(self, x: Tensor, routing: TaskRouting) -> Tensor:
        return self._per_task(x, routing, self.experts)

    @torch.no_grad()
    def init_from_dense(self, dense: Mapping[str, Tensor]) -> None:
        """Every task FFN starts as a copy of the dense (e.g. MAE) FFN, as the paper describes."""
        for expert in self.experts:
            expert.load_state_dict(dict(dense))


class SharedIndependentMlp(_RoutedMlp):
    """IS-FFN (ViTPose++ Sec. 4.4.1, Table 11): shared FFN ``fc1``/``fc2`` + per-task FFN ``experts.k.*``,
    outputs summed. Independent ``fc2`` starts at zero (see the module docstring)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        *,
        num_experts: int,
        act_layer: type[nn.Module] = nn.GELU,
        ddp_safe: bool = True,
        norm_layer=None,
        bias=True,
        drop=0.0,
        device=None,
        dtype=None,
        **_: object,
    ) -> None:
        super().__init__()
        hidden_features = self._init_common(
            in_features, hidden_features, num_experts, ddp_safe, norm_layer, bias, drop
        )
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(in_features, hidden_features, **dd)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features, **dd)
        self.experts = nn.ModuleList(
            Mlp(in_features, hidden_features, act_layer=act_layer, **dd) for _ in range(num_experts)
        )

    def zero_init_experts(self) -> None:
        """Make every independent branch an exact no-op (its ``fc2`` weight and bias zero)."""
        with torch.no_grad():
            for expert in self.experts:
                expert.fc2.weight.zero_()
                expert.fc2.bias.zero_()

    def _forward_sorted(self, x: Tensor, routing: TaskRouting) -> Tensor:
        shared = self.fc2(self.act(self.fc1(x)))
        return shared + self._per_task(x, routing, self.experts)

    @torch.no_grad()
    def init_from_dense(self, dense: Mapping[str, Tensor]) -> None:
        """Shared FFN from the dense (e.g. MAE) FFN; independent branches zero-output (paper: "with zero")."""
        self.fc1.weight.copy_(dense["fc1.weight"])
        self.fc1.bias.copy_(dense["fc1.bias"])
        self.fc2.weight.copy_(dense["fc2.weight"])
        self.fc2.bias.copy_(dense["fc2.bias"])
        self.zero_init_experts()


def build_ffn(
    ffn: str,
    in_features: int,
    hidden_features: int,
    *,
    num_experts: int = 1,
    part_features: int | None = None,
    ddp_safe: bool = True,
    act_layer: type[nn.Module] = nn.GELU,
    device=None,
    dtype=None,
) -> nn.Module:
    """Build one FFN of the given variant (see the module docstring for ``ffn``)."""
    kw = {"act_layer": act_layer, "device": device, "dtype": dtype}
    if ffn == "shared":
        return Mlp(in_features, hidden_features, **kw)
    if ffn == "ps":
        return PartiallySharedMlp(
            in_features,
            hidden_features,
            num_experts=num_experts,
            ddp_safe=ddp_safe,
            part_features=resolve_part_features(in_features, part_features),
            **kw,
        )
    if ffn == "independent":
        return IndependentMlp(in_features, hidden_features, num_experts=num_experts, ddp_safe=ddp_safe, **kw)
    if ffn == "shared_independent":
        return SharedIndependentMlp(
            in_features, hidden_features, num_experts=num_experts, ddp_safe=ddp_safe, **kw
        )
    raise ValueError(f"unknown ffn {ffn!r}; choose one of {', '.join(FFN_TYPES)}")


def _copy(t: Tensor) -> Tensor:
    return t.detach().clone()


def merge_ffn(mlp: nn.Module, task: int) -> Mlp:
    """Fold a routed FFN into the plain timm ``Mlp`` that computes task ``task``'s output.

    - ``shared`` (``Mlp``): a copy.
    - PS-FFN: ``fc2 = cat([fc2, experts[task]], 0)`` (rows), as the official ``tools/model_split.py``; hidden 4C.
    - I-FFN: a copy of ``experts[task]``.
    - IS-FFN: ``shared(x) + expert(x)`` with a shared input and an element-wise activation is itself one FFN of
      twice the hidden width: ``fc1 = cat([fc1, e.fc1], 0)``, ``fc2 = cat([fc2, e.fc2], 1)``,
      ``fc2.bias = fc2.bias + e.fc2.bias``. Exact up to float rounding; the merged model has 2x the FFN
      parameters of a plain ViT (ViTPose++ Table 11 lists IS-FFN at 143M vs 86M for B).
    """
    if isinstance(mlp, Mlp):
        src = mlp
        out = Mlp(src.fc1.in_features, src.fc1.out_features, act_layer=type(src.act))
        out.load_state_dict({k: _copy(v) for k, v in src.state_dict().items()})
        return out.to(device=src.fc1.weight.device, dtype=src.fc1.weight.dtype)
    num_experts = getattr(mlp, "num_experts", None)
    if num_experts is None:
        raise TypeError(f"cannot merge an FFN of type {type(mlp).__name__}")
    if not 0 <= task < num_experts:
        raise ValueError(f"task index {task} out of range: the FFN has {num_experts} experts")
    if isinstance(mlp, IndependentMlp):
        return merge_ffn(mlp.experts[task], 0)
    ref = mlp.fc1.weight
    if isinstance(mlp, PartiallySharedMlp):
        expert = mlp.experts[task]
        state = {
            "fc1.weight": _copy(mlp.fc1.weight),
            "fc1.bias": _copy(mlp.fc1.bias),
            "fc2.weight": torch.cat([mlp.fc2.weight, expert.weight], 0).detach(),
            "fc2.bias": torch.cat([mlp.fc2.bias, expert.bias], 0).detach(),
        }
        hidden = mlp.hidden_features
    elif isinstance(mlp, SharedIndependentMlp):
        expert = mlp.experts[task]
        state = {
            "fc1.weight": torch.cat([mlp.fc1.weight, expert.fc1.weight], 0).detach(),
            "fc1.bias": torch.cat([mlp.fc1.bias, expert.fc1.bias], 0).detach(),
            "fc2.weight": torch.cat([mlp.fc2.weight, expert.fc2.weight], 1).detach(),
            "fc2.bias": (mlp.fc2.bias + expert.fc2.bias).detach(),
        }
        hidden = 2 * mlp.hidden_features
    else:
        raise TypeError(f"cannot merge an FFN of type {type(mlp).__name__}")
    out = Mlp(mlp.in_features, hidden, act_layer=type(mlp.act), device=ref.device, dtype=ref.dtype)
    out.load_state_dict(state)
    return out
