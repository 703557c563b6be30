"""The plug-in point for skeleton-bridging methods that live inside the training module (ACAE, PoseBH, prompts).

A bridge is an ``nn.Module`` held by :class:`~multipose.lit_module.PoseLitModule` under ``bridges.<name>``: its
parameters and buffers train, checkpoint and resume with the module. Its settings come from the ``bridge`` config
group (``+bridge=acae`` puts them at ``bridge.acae``); its loss weights from ``loss.<name>.*``. The module calls
the hooks below; every hook has a do-nothing default, so a bridge implements only what it needs.

Naming rules the module enforces:

* training terms are logged as ``train/<bridge>/<term>`` and summed into the loss; a stage gates them with
  ``losses_on: [<bridge>]`` (every term) or ``[<bridge>.<term>]`` (one term), asked via
  ``lit.loss_on(<bridge>, <term>)``;
* validation variants (alternate predictions scored with the dataset's own metric and the cross-skeleton
  metrics) are logged as ``val/<ds>/<variant>/<metric>`` and ``val/<ds>/cross/<head>/<variant>/<metric>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    # the host is multipose.lit_module.PoseLitModule, which imports this module: name its base class here
    from lightning import LightningModule as PoseLitModule

    from multipose.models.pose_model import HeadOutputs

__all__ = ["BRIDGES", "Bridge", "bridge_class", "build_bridges"]

#: bridge name -> "module:Class"; a name here is what ``+bridge=<name>`` and ``loss.<name>.*`` refer to
BRIDGES: dict[str, str] = {
    "acae": "multipose.bridges.acae:ACAEBridge",
    "posebh": "multipose.bridges.posebh:PoseBHBridge",
    "prompt": "multipose.bridges.prompt:PromptBridge",
}


class Bridge(nn.Module):
    """Base class of the training-time bridges.

    Args:
        settings: this bridge's config (``bridge.<name>``).
        loss: this bridge's loss weights (``loss.<name>``, may be empty).
        model_config: the model description (``heads`` = {dataset: {skeleton, num_keypoints}}, ...).
        mix: the frozen mix description (``MultiPoseDataModule.describe()``), or None when not known yet.
    """

    name: ClassVar[str] = ""
    #: evaluation variants this bridge adds (``val/<ds>/<variant>/...``)
    variants: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        settings: Mapping[str, Any],
        loss: Mapping[str, Any],
        model_config: Mapping[str, Any],
        mix: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.settings = dict(settings or {})
        self.loss_weights = dict(loss or {})

    def is_frozen(self, lit: PoseLitModule, part: str) -> bool:
        """Whether the stage schedule freezes ``bridges.<name>.<part>`` (or the whole bridge) now."""
        frozen = getattr(lit.model, "frozen_parts", ()) or ()
        return f"bridges.{self.name}" in frozen or f"bridges.{self.name}.{part}" in frozen

    # -------------------------------------------------------------- training
    def on_fit_start(self, lit: PoseLitModule) -> None:
        """Once before training (e.g. fit an autoencoder from the current heads)."""

    def training_losses(
        self, lit: PoseLitModule, batch: Mapping[str, torch.Tensor], outputs: HeadOutputs
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms of one mixed batch, ``{term: scalar}``; skip terms ``lit.loss_on(name, term)``
        says are off in the current stage."""
        return {}

    def after_training_step(
        self, lit: PoseLitModule, batch: Mapping[str, torch.Tensor], outputs: HeadOutputs
    ) -> None:
        """After the optimiser step of a batch (e.g. EMA updates of non-gradient buffers)."""

    def extra_optimizer_params(self) -> list[nn.Parameter]:
        """Parameters of this bridge the optimiser should train (default: every parameter that requires grad)."""
        return [p for p in self.parameters() if p.requires_grad]

    # -------------------------------------------------------------- validation
    def variant_names(self, lit: PoseLitModule) -> tuple[str, ...]:
        """The variants scored in the coming validation (default: all of :attr:`variants`); a bridge may depend
        on the evaluation options (``lit.eval_cfg``) or its own state."""
        return tuple(self.variants)

    def validation_variants(
        self,
        lit: PoseLitModule,
        batch: Mapping[str, Any],
        dataset: str,
        predictions: Mapping[str, Any],
    ) -> dict[str, dict[str, np.ndarray]]:
        """Alternate image-pixel keypoints of one validation batch of ``dataset``:
        ``{variant: {head: [B, K_head, 3]}}`` for variants in :attr:`variants`. ``predictions`` are the heads'
        :class:`~multipose.inference.predictor.HeadPrediction` s of the batch."""
        return {}

    def validation_metrics(self, lit: PoseLitModule) -> dict[str, float]:
        """Extra flat metrics at the end of a validation epoch (``val/...``), the same on every rank."""
        return {}

    def figures(self, lit: PoseLitModule, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Pictures for the run's ``pictures/`` and the loggers, ``{name: matplotlib Figure or RGB uint8 [H, W, 3]}``,
        drawn after each validation on global rank 0 from a few validation crops of every dataset (eval mode, no
        gradients); saved as ``pictures/<bridge>_<name>.png`` (:mod:`multipose.viz.figures`)."""
        return {}


def bridge_class(name: str) -> type[Bridge]:
    if name not in BRIDGES:
        raise ValueError(f"bridge.{name}: unknown bridge; known bridges are {sorted(BRIDGES)}")
    module, cls = BRIDGES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_bridges(
    bridge: Mapping[str, Any] | None,
    loss: Mapping[str, Any],
    model_config: Mapping[str, Any],
    mix: Mapping[str, Any] | None,
) -> nn.ModuleDict:
    """One :class:`Bridge` per entry of the ``bridge`` config (``null`` entries are off), in config order."""
    out = nn.ModuleDict()
    for name, settings in dict(bridge or {}).items():
        if settings is None or (isinstance(settings, Mapping) and settings.get("enabled") is False):
            continue
        out[name] = bridge_class(name)(dict(settings or {}), dict(loss.get(name) or {}), model_config, mix)
    return out
