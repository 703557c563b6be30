"""Top-down multi-dataset pose model: one backbone, one heatmap head per dataset of the mix.

Conventions (docs/architecture.md): dataset index in a batch == position of the dataset in the mix ==
expert index of the backbone == position of the head in ``heads``. Heads are keyed by dataset name; each head
predicts its dataset's skeleton (``head_skeletons[name]``). Any head can run on any image (cross-skeleton
prediction).

Which expert a head's prediction uses (routed / MoE backbone):

* training (:meth:`PoseModel.head_outputs`): the backbone runs **once** on the mixed batch, every sample through
  its own dataset's expert; a head's prediction on another dataset's sample (a cross prediction) therefore uses
  the **sample's** expert, as in ViTPose++ training;
* test time (:meth:`PoseModel.predict_heatmaps`, :class:`multipose.inference.Predictor`): a head runs on features
  computed with **its own** expert, i.e. the merged single-task model of that dataset (:meth:`merge_experts`).

Frozen parts (``frozen_parts``, set by the stage schedule): ``"backbone"``, ``"experts"``, ``"heads"``,
``"heads.<dataset>"``. Frozen parts run under ``torch.no_grad()`` where that is possible: the backbone when it is
frozen together with its experts (or has none), a head when ``heads`` or ``heads.<name>`` is frozen. Freezing only
one of backbone/experts still runs the backbone with gradients; the stage schedule clears the frozen parameters'
gradients before the optimiser step. :meth:`frozen_anchor` ties parameters that got no gradient into the loss
with weight 0, so DDP (which expects every parameter that requires grad to receive one) needs no
``find_unused_parameters``.

Pose prompts (:mod:`multipose.models.prompt_tokens`): a model built with ``model_config["prompt"]`` has
``model.prompt`` (a :class:`~multipose.models.prompt_tokens.PromptEncoder`); every forward method takes an
optional ``prompt`` mapping (the batch's ``prompt_*`` tensors) whose tokens join the backbone's patch tokens.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from multipose.models.heads import (
    bn_statistics_from,
    build_head,
    recording_bn_statistics,
    upsample_for_stride,
)
from multipose.models.parts import parts_of
from multipose.models.registry import build_backbone
from multipose.models.vit import ViTPoseBackbone

__all__ = ["HEADS_ON", "HEAD_BN", "HeadOutputs", "PoseModel", "build_pose_model"]

#: ``model.heads_on``: ``own`` — each head predicts only its own dataset's samples; ``all`` — every head also
#: predicts every other sample of the batch (cross predictions, for the bridging losses).
HEADS_ON = ("own", "all")
#: ``model.head_bn``: ``own`` — a head's BatchNorm statistics come from its own samples; ``batch`` — every head
#: runs on the whole per-GPU batch, so its statistics are the full mixed batch's (official ViTPose++).
HEAD_BN = ("own", "batch")


@dataclass
class HeadOutputs:
    """What the heads predicted for one mixed batch.

    ``owner [B]`` is the index (in mix order) of the dataset that owns each sample; ``owned[name]`` holds head
    ``name``'s heatmaps ``[n_name, K_name, h, w]`` of the samples it owns, in batch order (absent when the batch
    has none); ``all[name]`` holds its heatmaps of **every** sample ``[B, K_name, h, w]`` when cross predictions
    were computed (``heads_on='all'`` or ``head_bn='batch'``), else ``all`` is None. The supervised loss reads
    ``owned`` only, so its value and gradients do not depend on ``heads_on``. ``features`` are the backbone
    features ``[B, C, h, w]`` the heads ran on (for bridges with their own branch, e.g. PoseBH's embedding module).
    """

    owner: Tensor
    owned: dict[str, Tensor]
    all: dict[str, Tensor] | None
    features: Tensor | None = None

    def mask(self, index: int) -> Tensor:
        """``[B]`` bool: the samples owned by dataset number ``index``."""
        return self.owner == index


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
        #: names of the parts that do not train (see the module docstring); set by the stage schedule
        self.frozen_parts: frozenset[str] = frozenset()
        #: the pose-prompt encoder (:func:`multipose.models.prompt_tokens.attach_prompt_encoder`), or None
        self.prompt: nn.Module | None = None

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
    def features(
        self, images: Tensor, dataset_idx: Tensor | None = None, prompt: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Backbone features, with the prompt's tokens when ``prompt`` is given."""
        if prompt is None:
            return self.backbone(images, dataset_idx)
        if self.prompt is None:
            raise ValueError(
                "this model has no prompt tokens (model_config.prompt is not set); train it with "
                "+prompt=extpose to use pose prompts"
            )
        extra = self.prompt(prompt, self.backbone, images.shape[-2:])
        return self.backbone(images, dataset_idx, extra=extra)

    def forward(
        self, images: Tensor, dataset_idx: Tensor | None = None, prompt: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Backbone features ``[B, C, h, w]`` (each sample through its own dataset's expert)."""
        return self.features(images, dataset_idx, prompt)

    def heatmaps(
        self,
        images: Tensor,
        dataset_idx: Tensor | None = None,
        head_names: Sequence[str] | None = None,
        prompt: Mapping[str, Tensor] | None = None,
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
        feats = self.features(images, dataset_idx, prompt)
        return {n: self.heads[n](feats) for n in names}

    def routed_heatmaps(self, images: Tensor, dataset_idx: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Backbone once, then each head only on its own dataset's samples.

        Returns ``{name: (index [n], heatmaps [n, K_name, h, w])}`` for the datasets present in the batch, where
        ``index`` are the sample positions in the batch (ascending). Cheaper than :meth:`heatmaps` with many heads;
        BatchNorm statistics of a head then come from its own samples only.
        """
        owned = self.head_outputs(images, dataset_idx).owned
        return {
            n: ((dataset_idx == self.head_index(n)).nonzero(as_tuple=True)[0], h) for n, h in owned.items()
        }

    # ----------------------------------------------------------- training
    def is_frozen(self, part: str) -> bool:
        """Whether ``part`` (``backbone``, ``experts``, ``heads`` or ``heads.<name>``) is frozen."""
        return any(p in self.frozen_parts for p in parts_of(part))  # "heads.a" is frozen by "heads" too

    def _backbone_context(self) -> contextlib.AbstractContextManager:
        routed = getattr(self.backbone, "routed", False)
        no_grad = self.is_frozen("backbone") and (self.is_frozen("experts") or not routed)
        return torch.no_grad() if no_grad else contextlib.nullcontext()

    def head_outputs(
        self,
        images: Tensor,
        dataset_idx: Tensor,
        heads_on: str = "own",
        head_bn: str = "own",
        prompt: Mapping[str, Tensor] | None = None,
    ) -> HeadOutputs:
        """Backbone once on the mixed batch (each sample through its own expert), then the heads.

        ``head_bn='own'``: head ``d`` runs on its own samples (BatchNorm statistics of those samples, as before);
        with ``heads_on='all'`` it then also runs on the other samples, normalised with the statistics of its own
        samples (constants; the running statistics are updated once, by the own samples; a head without samples
        in the batch uses its running statistics). ``head_bn='batch'``: every head runs on the whole batch
        (statistics of the full batch; ``owned`` is sliced from it), so cross predictions come for free.
        """
        if heads_on not in HEADS_ON:
            raise ValueError(f"model.heads_on must be one of {HEADS_ON}, got {heads_on!r}")
        if head_bn not in HEAD_BN:
            raise ValueError(f"model.head_bn must be one of {HEAD_BN}, got {head_bn!r}")
        with self._backbone_context():
            feats = self.features(images, dataset_idx, prompt)
        owned: dict[str, Tensor] = {}
        full: dict[str, Tensor] | None = {} if (heads_on == "all" or head_bn == "batch") else None
        for d, name in enumerate(self.dataset_names):
            head = self.heads[name]
            sel = (dataset_idx == d).nonzero(as_tuple=True)[0]
            with torch.no_grad() if self.is_frozen(f"heads.{name}") else contextlib.nullcontext():
                if head_bn == "batch":
                    full[name] = head(feats)  # type: ignore[index]
                    if sel.numel():
                        owned[name] = full[name][sel]  # type: ignore[index]
                    continue
                if heads_on == "own":
                    if sel.numel():
                        owned[name] = head(feats[sel])  # the same indexing (and backward) as always
                    continue
                other = (dataset_idx != d).nonzero(as_tuple=True)[0]
                stats = None
                parts = []
                if sel.numel():
                    with recording_bn_statistics(head) as stats:
                        owned[name] = head(feats[sel])
                    parts.append(owned[name])
                if other.numel():
                    with bn_statistics_from(head, stats):
                        parts.append(head(feats[other]))
                order = torch.argsort(torch.cat([sel, other]))
                full[name] = torch.cat(parts).index_select(0, order)  # type: ignore[index]
        return HeadOutputs(owner=dataset_idx, owned=owned, all=full, features=feats)

    def frozen_anchor(self, reference: Tensor, outputs: HeadOutputs | None = None) -> Tensor:
        """``0 * sum`` of the trainable parameters that the supervised loss of ``outputs`` does not reach (frozen
        parts run under ``no_grad``; heads without samples in the batch), as a scalar on ``reference``'s device.
        Adding it to the loss gives them zero gradients, which DDP needs."""
        params: list[Tensor] = []
        if self.is_frozen("backbone") and (
            self.is_frozen("experts") or not getattr(self.backbone, "routed", False)
        ):
            params += [p for p in self.backbone.parameters() if p.requires_grad]
        for name in self.dataset_names:
            absent = outputs is not None and name not in outputs.owned
            if self.is_frozen(f"heads.{name}") or absent:
                params += [p for p in self.heads[name].parameters() if p.requires_grad]
        if (
            self.prompt is not None
        ):  # a batch whose prompts are all masked leaves the encoder out of the graph
            params += [p for p in self.prompt.parameters() if p.requires_grad]
        anchor = reference.new_zeros(())
        for p in params:
            anchor = anchor + 0.0 * p.sum()
        return anchor

    @torch.no_grad()
    def predict_heatmaps(
        self,
        images: Tensor,
        skeleton: str | None = None,
        head: str | None = None,
        prompt: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """Heatmaps ``[B, K, h, w]`` of one head, chosen by dataset name or skeleton name, for every image
        (the backbone routes every sample through that dataset's expert). Runs under ``no_grad``; call
        ``.eval()`` first for inference."""
        name = self.resolve_head(skeleton=skeleton, head=head)
        idx = torch.full((images.shape[0],), self.head_index(name), dtype=torch.long, device=images.device)
        return self.heads[name](self.features(images, idx, prompt))

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
        merged.prompt = copy.deepcopy(self.prompt)
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
                raise ValueError(
                    f"cannot tell the keypoint count of dataset {name!r}; pass num_keypoints={{...}}"
                )
        heads[name] = build_head(head, backbone.embed_dim, k, upsample=up, **dict(head_kwargs or {}))
    return PoseModel(backbone, heads, datasets)
