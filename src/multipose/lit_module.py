"""The LightningModule: one ViT, one heatmap head per dataset skeleton, trained on mixed batches.

Training: the backbone runs once on the mixed batch (each sample through its dataset's expert when the FFN is
partially shared) and the heads run as ``model.heads_on`` / ``model.head_bn`` say
(:meth:`~multipose.models.pose_model.PoseModel.head_outputs`); head ``d`` is supervised on dataset ``d``'s samples
by the target-weighted heatmap MSE against its own skeleton's targets (the padded target is sliced to the head's
K, the fix of ViTPose issues #78/#128). Losses are logged per dataset.

Validation: one loader per dataset. :class:`~multipose.inference.Predictor` runs the heads (each with its own
expert, flip test, the head's codec, crop -> image) and :class:`~multipose.evaluation.mix.MixEvaluation` scores
them (own metric, cross-skeleton accuracy, cross-head consistency, DDP gathering, ``val/score``). Both read the
frozen mix description (``mix``, from ``MultiPoseDataModule.describe()``), not the DataModule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from multipose.bridges.base import build_bridges
from multipose.bridges.voting import METHODS as VOTING_METHODS
from multipose.evaluation.mix import PRIMARY_METRIC
from multipose.losses import keypoint_mse
from multipose.models.build import model_from_config
from multipose.models.head_options import HeadOptions
from multipose.models.pose_model import HeadOutputs
from multipose.models.prompt_tokens import prompt_from_batch
from multipose.training.stages import loss_enabled

log = logging.getLogger(__name__)


class PoseLitModule(L.LightningModule):
    """Args:
    model_config: plain dict describing the model (``backbone``, ``head``, ``heads`` = {dataset: {skeleton,
        num_keypoints}}), see :func:`multipose.models.build.build_pose_model`. Stored in the checkpoint's
        hyper-parameters so :func:`multipose.load_pose_model` can rebuild the network without Hydra.
    optim: AdamW / layer-decay / schedule settings (``conf/optim``).
    loss: loss weights (``conf/loss``).
    evaluation: flip test, cross-skeleton, consistency, NMS settings (``conf/evaluation``).
    model: how the heads run in training (``conf/model``: ``heads_on``, ``head_bn``, ``sync_bn``).
    mix: the mix description (``MultiPoseDataModule.describe()``); without it validation asks the attached
        DataModule once.
    bridge: the skeleton-bridging methods trained inside this module (``conf/bridge``: ``{name: settings}``),
        built as :class:`~multipose.bridges.base.Bridge` modules under ``self.bridges``; their loss weights are
        ``loss.<name>.*``.

    ``losses_on`` (set by the stage schedule; None = every configured loss) names the loss terms that count,
    e.g. ``{"heatmap"}``; ``model.frozen_parts`` the parts that do not train.
    """

    def __init__(
        self,
        model_config: Mapping[str, Any],
        optim: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        model: Mapping[str, Any] | None = None,
        mix: Mapping[str, Any] | None = None,
        bridge: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model_config = dict(model_config)
        self.optim_cfg = dict(optim or {})
        self.loss_cfg = dict(loss or {})
        self.eval_cfg = dict(evaluation or {})
        self.model = model_from_config(self.model_config)
        self.dataset_names: list[str] = list(self.model_config["heads"])
        self.num_keypoints = [int(self.model_config["heads"][n]["num_keypoints"]) for n in self.dataset_names]
        weights = dict(self.loss_cfg.get("dataset_weights") or {})
        unknown = sorted(set(weights) - set(self.dataset_names))
        if unknown:
            raise ValueError(
                f"loss.dataset_weights names unknown datasets {unknown}; the mix has {self.dataset_names}"
            )
        self.dataset_weights = [float(weights.get(n, 1.0)) for n in self.dataset_names]
        reduction = self.loss_cfg.get("reduction", "batch_share")
        if reduction not in ("batch_share", "per_dataset"):
            raise ValueError(f"loss.reduction must be 'batch_share' or 'per_dataset', got {reduction!r}")
        self.loss_reduction = reduction
        opts = HeadOptions.from_config(model, self.loss_cfg)
        self.heads_on, self.head_bn, self.sync_bn = opts.heads_on, opts.head_bn, opts.sync_bn
        voting = self.eval_cfg.get("voting", "none")
        if voting not in ("none", *VOTING_METHODS):
            raise ValueError(
                f"evaluation.voting must be one of none, {', '.join(VOTING_METHODS)}; got {voting!r}"
            )
        self.mix = dict(mix) if mix is not None else None
        self.bridges = build_bridges(bridge, self.loss_cfg, self.model_config, self.mix)
        self.losses_on: frozenset[str] | None = None
        self.val_metrics: dict[str, float] = {}
        self.val_metrics_step = -1  # global step at which val_metrics were computed
        self.evaluation = None
        self.predictor = None

    def setup(self, stage: str) -> None:
        converted = any(isinstance(m, torch.nn.SyncBatchNorm) for m in self.model.heads.modules())
        if self.sync_bn and self.trainer.world_size > 1 and not converted:
            if self.trainer.strategy.root_device.type == "cpu":
                raise ValueError(
                    "model.sync_bn=true needs GPUs (SyncBatchNorm does not run on CPU); set it false"
                )
            self.model.heads = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model.heads)

    # ------------------------------------------------------------------ training
    def forward(self, images: torch.Tensor, dataset_idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heatmaps of every sample from its own dataset's head: ``{dataset: [n_d, K_d, h, w]}``."""
        return self.head_outputs(images, dataset_idx).owned

    def head_outputs(
        self,
        images: torch.Tensor,
        dataset_idx: torch.Tensor,
        prompt: Mapping[str, torch.Tensor] | None = None,
    ) -> HeadOutputs:
        """Every head's heatmaps for a mixed batch (``all`` when ``model.heads_on=all``) plus the owner mask;
        ``prompt``: the batch's pose prompts (``data.prompt``), whose tokens join the image tokens."""
        return self.model.head_outputs(images, dataset_idx, self.heads_on, self.head_bn, prompt=prompt)

    def loss_on(self, term: str, dataset: str | None = None) -> bool:
        """Whether loss ``term`` (of ``dataset``) counts in the current stage (``term`` or ``term.<dataset>`` in
        ``losses_on``; everything when no stage restricts it). Bridges ask ``loss_on(<bridge>, <term>)``."""
        return loss_enabled(self.losses_on, term, dataset)

    def supervised_loss(
        self, batch: dict[str, torch.Tensor], outputs: HeadOutputs | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """Ground-truth heatmap loss of a mixed batch: head ``d`` on dataset ``d``'s samples, target-weighted MSE
        against the target sliced to the head's K; per-dataset losses are logged.

        Returns ``(sum_d w_d * loss_d, {dataset: its heads' predictions}, {dataset: w_d})`` where ``w_d`` is the
        dataset weight times its batch share (``loss.reduction=batch_share``) or 1 (``per_dataset``).
        """
        if outputs is None:
            outputs = self.head_outputs(batch["image"], batch["dataset_idx"], prompt_from_batch(batch))
        didx = outputs.owner
        total = batch["image"].new_zeros(())
        weights: dict[str, float] = {}
        for d, name in enumerate(self.dataset_names):
            if name not in outputs.owned or not self.loss_on("heatmap", name):
                continue
            sel = (didx == d).nonzero(as_tuple=True)[0]
            k = self.num_keypoints[d]
            pred = outputs.owned[name]
            loss_d = keypoint_mse(pred, batch["heatmap"][sel, :k], batch["heatmap_weight"][sel, :k])
            self.log(f"train/{name}/loss", loss_d.detach(), batch_size=int(sel.numel()))
            share = sel.numel() / didx.shape[0] if self.loss_reduction == "batch_share" else 1.0
            weights[name] = self.dataset_weights[d] * share
            total = total + weights[name] * loss_d
        # parameters left out of the graph (frozen, or heads without samples) get zero gradients: DDP needs them
        total = total + self.model.frozen_anchor(total, outputs)
        return total, dict(outputs.owned), weights

    def on_fit_start(self) -> None:
        for bridge in self.bridges.values():
            bridge.on_fit_start(self)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        outputs = self.head_outputs(batch["image"], batch["dataset_idx"], prompt_from_batch(batch))
        total, _, _ = self.supervised_loss(batch, outputs)
        loss = float(self.loss_cfg.get("heatmap", 1.0)) * total  # stage-gated per dataset in supervised_loss
        n = batch["image"].shape[0]
        for name, bridge in self.bridges.items():
            for term, value in bridge.training_losses(self, batch, outputs).items():
                self.log(f"train/{name}/{term}", value.detach(), batch_size=n)
                loss = loss + value
        self._last_outputs = outputs if len(self.bridges) else None
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=n)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        heads = getattr(self, "_last_outputs", None)
        self._last_outputs = None
        for bridge in self.bridges.values():
            bridge.after_training_step(self, batch, heads)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        from multipose.evaluation.mix import MixEvaluation
        from multipose.inference import MixSpec, Predictor

        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError(
                "PoseLitModule validation needs the MultiPoseDataModule (the ground truth) attached"
            )
        if self.mix is None:
            self.mix = dm.describe()
        spec = MixSpec.from_dict(self.mix)
        self.predictor = Predictor(self.model, spec, flip_test=self.eval_cfg.get("flip_test", True))
        variants = [v for bridge in self.bridges.values() for v in bridge.variant_names(self)]
        self.evaluation = MixEvaluation(
            spec, dm.val_instances, self.eval_cfg, images=dm.val_image_ids, variants=variants
        )

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        name = self.predictor.mix.names[dataloader_idx]
        preds = self.predictor.predict_batch(batch, name, self.evaluation.heads_for(name))
        voting = self.eval_cfg.get("voting", "none")
        voted = None if voting == "none" else self.predictor.vote(preds, name, voting, batch)
        variants: dict[str, dict[str, Any]] = {}
        for bridge in self.bridges.values():
            variants.update(bridge.validation_variants(self, batch, name, preds))
        self.evaluation.update(
            name, batch, {h: p.keypoints for h, p in preds.items()}, voted=voted, variants=variants
        )
        return preds  # {head: HeadPrediction}: callbacks (multipose.viz.PosePictures) draw what was scored

    def on_validation_epoch_end(self) -> None:
        if self.evaluation is None:
            return
        out_dir = Path(self.trainer.default_root_dir) / "results" if self.trainer.is_global_zero else None
        metrics = self.evaluation.compute(out_dir)
        for bridge in self.bridges.values():
            metrics.update(bridge.validation_metrics(self))
        self.val_metrics = metrics
        self.val_metrics_step = self.global_step
        # every rank holds the same gathered metrics; sync_dist only silences Lightning's DDP warning
        self.log_dict(metrics, sync_dist=self.trainer.world_size > 1)
        if self.trainer.is_global_zero:
            summary = ", ".join(
                f"{k.split('/')[1]} {k.split('/')[-1]} {v:.3f}"
                for k, v in metrics.items()
                if k.count("/") == 2 and k.split("/")[-1] in PRIMARY_METRIC.values()
            )
            log.info("epoch %d validation: %s", self.current_epoch, summary)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        from multipose.models.optim import build_optimizer

        dm = getattr(self.trainer, "datamodule", None)
        return build_optimizer(
            self.model,
            self.optim_cfg,
            batch_size=None if dm is None else int(dm.batch_size) * int(self.trainer.accumulate_grad_batches),
            total_steps=int(self.trainer.estimated_stepping_batches),
            max_epochs=self.trainer.max_epochs,
            extra_modules={name: bridge for name, bridge in self.bridges.items()},
        )
