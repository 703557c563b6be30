"""Top-down multi-dataset pose model: one backbone, one heatmap head per dataset of the mix.

Conventions (docs/architecture.md): dataset index in a batch == position of the dataset in the mix ==
expert index of the backbone == position of the head in ``heads``. Heads are keyed by dataset name; each head
predicts its dataset's skeleton (``head_skeletons[name]``). Any head can run on any image (cross-skeleton
prediction); for a routed backbone the features then come from that head's own expert.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multipose.models.heads import build_head, upsample_for_stride
from multipose.models.registry import build_backbone
from multipose.models.vit import ViTPoseBackbone

__all__ = ["PoseModel", "build_pose_model"]


def _skeleton_info(skeleton: Any, dataset: str) -> tuple[str, int | None]:
    """(name, K) of a skeleton given by name or as an object with ``name`` / ``num_keypoints``."""
    if isinstance(skeleton, str):
        try:
            from multipose.skeletons import get_skeleton
        except ImportError:  # registry not available: name only, no size check
            return skeleton, None
        sk = get_skeleton(skeleton)
        return sk.name, int(sk.num_keypoints)
    name = getattr(skeleton, "name", None)
    k = getattr(skeleton, "num_keypoints", None)
    if name is None or k is None:
        raise TypeError(
            f"head_skeletons[{dataset!r}] must be a skeleton name or a Skeleton (with .name and .num_keypoints), "
            f"got {type(skeleton).__name__}"
        )
    return str(name), int(k)


class PoseModel(nn.Module):
    """``backbone`` + ``heads`` (``nn.ModuleDict`` keyed by dataset name, in mix order).

    Args:
        backbone: a :class:`ViTPoseBackbone` (or any module with ``forward(x, dataset_idx)`` and ``num_experts``).
        heads: dataset name -> head module (with ``num_keypoints``), in mix order.
        head_skeletons: dataset name -> skeleton (name or Skeleton object). When given, every head's
            ``num_keypoints`` must equal its skeleton's K.
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: Mapping[str, nn.Module],
        head_skeletons: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not heads:
            raise ValueError("PoseModel needs at least one head (one per dataset of the mix)")
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))
        self.dataset_names: list[str] = list(self.heads.keys())
        num_experts = getattr(backbone, "num_experts", 1)
        if getattr(backbone, "routed", False) and num_experts != len(self.dataset_names):
            raise ValueError(
                f"the backbone has {num_experts} task experts but the model has {len(self.dataset_names)} heads "
                f"({', '.join(self.dataset_names)}); set num_experts to the number of datasets in the mix"
            )
        self.head_skeletons: dict[str, str] = {}
        if head_skeletons is not None:
            missing = [n for n in self.dataset_names if n not in head_skeletons]
            extra = [n for n in head_skeletons if n not in self.heads]
            if missing or extra:
                raise ValueError(
                    f"head_skeletons must name exactly the heads {self.dataset_names}; missing {missing}, unknown {extra}"
                )
            for name in self.dataset_names:
                sk_name, k = _skeleton_info(head_skeletons[name], name)
                head_k = getattr(self.heads[name], "num_keypoints", None)
                if k is not None and head_k is not None and int(head_k) != k:
                    raise ValueError(
                        f"head for dataset {name!r} predicts {head_k} keypoints but its skeleton {sk_name!r} has {k}; "
                        "build the head with the skeleton's keypoint count"
                    )
                self.head_skeletons[name] = sk_name

    # --------------------------------------------------------------- lookup
    def head_index(self, name: str) -> int:
        """Mix index (= expert index) of dataset ``name``."""
        try:
            return self.dataset_names.index(name)
        except ValueError:
            raise KeyError(f"no head named {name!r}; heads: {', '.join(self.dataset_names)}") from None

    def resolve_head(self, skeleton: str | None = None, head: str | None = None) -> str:
        """Pick a head by dataset name (``head``) or by skeleton name (``skeleton``); clear error otherwise."""
        if head is not None and skeleton is not None:
            raise ValueError("give either head= (dataset name) or skeleton=, not both")
        if head is not None:
            if head not in self.heads:
                raise KeyError(f"no head named {head!r}; heads: {', '.join(self.dataset_names)}")
            return head
        if skeleton is not None:
            matches = [n for n in self.dataset_names if self.head_skeletons.get(n) == skeleton]
            if not matches:
                known = ", ".join(f"{n} ({s})" for n, s in self.head_skeletons.items()) or "none recorded"
                raise KeyError(f"no head predicts skeleton {skeleton!r}; heads (skeleton): {known}")
            if len(matches) > 1:
                raise ValueError(
                    f"skeleton {skeleton!r} is predicted by several heads {matches}; choose one with head=<dataset name>"
                )
            return matches[0]
        if len(self.dataset_names) == 1:
            return self.dataset_names[0]
        raise ValueError(
            f"this model has {len(self.dataset_names)} heads; pass head= one of {self.dataset_names} "
            f"or skeleton= one of {sorted(set(self.head_skeletons.values()))}"
        )

    # -------------------------------------------------------------- forward
    def forward(self, images: Tensor, dataset_idx: Tensor | None = None) -> Tensor:
        """Backbone features ``[B, C, h, w]`` (each sample through its own dataset's expert)."""
        return self.backbone(images, dataset_idx)

    def heatmaps(
        self, images: Tensor, dataset_idx: Tensor | None = None, head_names: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """Run the backbone once and the requested heads (default: all) on **the whole batch**.

        Returns ``{name: [B, K_name, H/4, W/4]}``. This is the official ViTPose++ training layout (every head sees
        the mixed batch; the loss masks other datasets' samples) and gives cross-skeleton predictions. To run
        each head only on its own samples use :meth:`routed_heatmaps`.
        """
        names = self.dataset_names if head_names is None else list(head_names)
        for n in names:
            if n not in self.heads:
                raise KeyError(f"no head named {n!r}; heads: {', '.join(self.dataset_names)}")
        feats = self.backbone(images, dataset_idx)
        return {n: self.heads[n](feats) for n in names}

    def routed_heatmaps(self, images: Tensor, dataset_idx: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Backbone once, then each head only on its own dataset's samples.

        Returns ``{name: (index [n], heatmaps [n, K_name, h, w])}`` for the datasets present in the batch, where
        ``index`` are the sample positions in the batch (ascending). Cheaper than :meth:`heatmaps` with many heads;
        BatchNorm statistics of a head then come from its own samples only.
        """
        feats = self.backbone(images, dataset_idx)
        out: dict[str, tuple[Tensor, Tensor]] = {}
        for i, name in enumerate(self.dataset_names):
            index = torch.nonzero(dataset_idx == i, as_tuple=False).flatten()
            if index.numel():
                out[name] = (index, self.heads[name](feats.index_select(0, index)))
        return out

    @torch.no_grad()
    def predict_heatmaps(self, images: Tensor, skeleton: str | None = None, head: str | None = None) -> Tensor:
        """Heatmaps ``[B, K, h, w]`` of one head, chosen by dataset name or skeleton name, for every image
        (the backbone routes every sample through that dataset's expert). Runs under ``no_grad``; call
        ``.eval()`` first for inference."""
        name = self.resolve_head(skeleton=skeleton, head=head)
        idx = torch.full((images.shape[0],), self.head_index(name), dtype=torch.long, device=images.device)
        return self.heads[name](self.backbone(images, idx))

    # ----------------------------------------------------------------- merge
    def merge_experts(self, task: str | int) -> PoseModel:
        """A dense single-task model: the backbone with ``task``'s experts folded in
        (:meth:`ViTPoseBackbone.merge_experts`) and only that task's head (a copy). Its heatmaps equal this model's
        ``heads[task]`` output with ``dataset_idx = task`` to float rounding."""
        name = self.dataset_names[task] if isinstance(task, int) else task
        idx = self.head_index(name)
        if not hasattr(self.backbone, "merge_experts"):
            raise TypeError(f"backbone {type(self.backbone).__name__} has no merge_experts()")
        backbone = self.backbone.merge_experts(idx)
        head = copy.deepcopy(self.heads[name])
        skel = {name: self.head_skeletons[name]} if name in self.head_skeletons else None
        merged = PoseModel(backbone, {name: head}, None)
        merged.head_skeletons = dict(skel or {})
        return merged.train(self.training)


def build_pose_model(
    datasets: Mapping[str, Any],
    backbone: str | ViTPoseBackbone = "vit_tiny",
    head: str = "classic",
    num_keypoints: Mapping[str, int] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    **backbone_overrides: Any,
) -> PoseModel:
    """Build a :class:`PoseModel` for a data mix.

    Args:
        datasets: dataset name -> skeleton (name or Skeleton), in mix order.
        backbone: a size name from :func:`multipose.models.list_backbones` or a built backbone.
        head: ``classic`` | ``classic_fp`` | ``simple`` | ``minimal``; upsampling follows the backbone stride.
        num_keypoints: K per dataset when the skeletons are given by name and the skeleton registry is not used.
        head_kwargs: extra head arguments (e.g. ``num_deconv_filters=(64, 64)``).
        backbone_overrides: passed to :func:`build_backbone` (e.g. ``ffn='ps'``). For a routed ``ffn``,
            ``num_experts`` defaults to the number of datasets.
    """
    if isinstance(backbone, str):
        if backbone_overrides.get("ffn", "shared") != "shared":
            backbone_overrides.setdefault("num_experts", len(datasets))
        backbone = build_backbone(backbone, **backbone_overrides)
    elif backbone_overrides:
        raise ValueError("backbone overrides apply only when the backbone is given by name")
    up = upsample_for_stride(backbone.stride)
    heads = {}
    for name, skel in datasets.items():
        if num_keypoints is not None and name in num_keypoints:
            k = int(num_keypoints[name])
        else:
            k = _skeleton_info(skel, name)[1]
            if k is None:
                raise ValueError(f"cannot tell the keypoint count of dataset {name!r}; pass num_keypoints={{...}}")
        heads[name] = build_head(head, backbone.embed_dim, k, upsample=up, **dict(head_kwargs or {}))
    return PoseModel(backbone, heads, datasets)
