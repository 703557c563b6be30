"""The LightningModule: one ViT, one heatmap head per dataset skeleton, trained on mixed batches.

Training: the backbone runs once on the mixed batch (each sample routed to its dataset's expert when the FFN is
partially shared); head ``d`` runs only on the samples of dataset ``d`` and is supervised by the target-weighted
heatmap MSE against its own skeleton's targets (the padded target is sliced to the head's K, the fix of
ViTPose issues #78/#128). Losses are logged per dataset.

Validation: one loader per dataset. Each head runs with its own expert (for a MoE backbone this is the
merged single-task model of ViTPose++), with flip test, decoding by the dataset's codec and mapping back to image
pixels; the dataset's own head is scored with the dataset's metric (COCO AP, PCKh, PCK), every other head, on the
synthetic world, against the hidden ground truth of its skeleton (cross-skeleton accuracy).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from multipose.losses import keypoint_mse
from multipose.models.build import model_from_config

log = logging.getLogger(__name__)

PRIMARY_METRIC = {"coco": "AP", "pckh": "PCKh@0.5", "pck": "PCK@0.2"}


class PoseLitModule(L.LightningModule):
    """Args:
    model_config: plain dict describing the model (``backbone``, ``head``, ``heads`` = {dataset: {skeleton,
        num_keypoints}}), see :func:`multipose.models.build.build_pose_model`. Stored in the checkpoint's
        hyper-parameters so :func:`multipose.load_pose_model` can rebuild the network without Hydra.
    optim: AdamW / layer-decay / schedule settings (``conf/optim``).
    loss: loss weights (``conf/loss``).
    evaluation: flip test, cross-skeleton, NMS settings (``conf/evaluation``).
    """

    def __init__(
        self,
        model_config: Mapping[str, Any],
        optim: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
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
        self.val_metrics: dict[str, float] = {}
        self.val_metrics_step = -1  # global step at which val_metrics were computed
        self._evaluators: dict[str, Any] = {}
        self._cross: dict[str, Any] = {}

    # ------------------------------------------------------------------ training
    def forward(self, images: torch.Tensor, dataset_idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heatmaps of every sample from its own dataset's head: ``{dataset: [n_d, K_d, h, w]}``."""
        feats = self.model(images, dataset_idx)
        out = {}
        for d, name in enumerate(self.dataset_names):
            sel = (dataset_idx == d).nonzero(as_tuple=True)[0]
            if sel.numel():
                out[name] = self.model.heads[name](feats[sel])
        return out

    def supervised_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """Ground-truth heatmap loss of a mixed batch: the backbone once, head ``d`` on dataset ``d``'s samples,
        target-weighted MSE against the target sliced to the head's K; per-dataset losses are logged.

        Returns ``(sum_d w_d * loss_d, {dataset: its heads' predictions}, {dataset: w_d})`` where ``w_d`` is the
        dataset weight times its batch share (``loss.reduction=batch_share``) or 1 (``per_dataset``).
        """
        images, didx = batch["image"], batch["dataset_idx"]
        feats = self.model(images, didx)
        batch_size = images.shape[0]
        total = feats.new_zeros(())
        preds: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}
        for d, name in enumerate(self.dataset_names):
            head = self.model.heads[name]
            sel = (didx == d).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                # keep every parameter in the graph (DDP without find_unused_parameters)
                total = total + 0.0 * sum(p.sum() for p in head.parameters())
                continue
            k = self.num_keypoints[d]
            pred = head(feats[sel])
            loss_d = keypoint_mse(pred, batch["heatmap"][sel, :k], batch["heatmap_weight"][sel, :k])
            self.log(f"train/{name}/loss", loss_d.detach(), batch_size=int(sel.numel()))
            share = sel.numel() / batch_size if self.loss_reduction == "batch_share" else 1.0
            weights[name] = self.dataset_weights[d] * share
            total = total + weights[name] * loss_d
            preds[name] = pred
        return total, preds, weights

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        total, _, _ = self.supervised_loss(batch)
        loss = float(self.loss_cfg.get("heatmap", 1.0)) * total
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    # ------------------------------------------------------------------ validation
    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError("PoseLitModule validation needs the MultiPoseDataModule attached to the trainer")
        return dm

    def on_validation_epoch_start(self) -> None:
        from multipose.evaluation.cross_skeleton import CrossSkeletonEvaluator
        from multipose.evaluation.evaluators import build_evaluator

        dm = self._datamodule()
        self._evaluators, self._cross = {}, {}
        for name in dm.dataset_names:
            instances = dm.val_instances(name)
            entry = dm.dataset_entry(name)
            self._evaluators[name] = build_evaluator(
                entry.metric,
                name,
                instances,
                dm.skeletons[name],
                oks_nms_thr=self.eval_cfg.get("oks_nms_thr", 0.9),
                vis_thr=self.eval_cfg.get("vis_thr", 0.2),
            )
            if self.eval_cfg.get("cross_skeleton", True) and any(i.extra_gt for i in instances[:50]):
                heads = {h: dm.skeletons[h] for h in self.dataset_names if h != name}
                self._cross[name] = {
                    h: CrossSkeletonEvaluator(name, h, instances, skel) for h, skel in heads.items()
                    if any(skel.name in i.extra_gt for i in instances[:50])
                }

    def _head_heatmaps(self, images: torch.Tensor, head_idx: int, feats_cache: dict) -> torch.Tensor:
        """Heatmaps of head ``head_idx`` (with that dataset's expert), flip-tested if configured."""
        name = self.dataset_names[head_idx]
        key = head_idx if getattr(self.model.backbone, "routed", False) else -1
        if key not in feats_cache:
            didx = torch.full((images.shape[0],), head_idx, dtype=torch.long, device=images.device)
            feats = self.model(images, didx)
            feats_flip = self.model(images.flip(-1), didx) if self.eval_cfg.get("flip_test", True) else None
            feats_cache[key] = (feats, feats_flip)
        feats, feats_flip = feats_cache[key]
        heatmaps = self.model.heads[name](feats)
        if feats_flip is not None:
            dm = self._datamodule()
            flipped = self.model.heads[name](feats_flip)
            flipped = dm.codecs[name].flip_back(flipped, dm.skeletons[name].flip_indices)
            heatmaps = 0.5 * (heatmaps + flipped)
        return heatmaps

    def _to_image(self, heatmaps: torch.Tensor, head_name: str, val_name: str, batch) -> np.ndarray:
        """Decode with the head's codec and map to image pixels with the validation set's crop geometry."""
        from multipose.data.geometry import crop_to_image

        dm = self._datamodule()
        coords, scores = dm.codecs[head_name].decode(heatmaps.float().detach().cpu())
        entry = dm.dataset_entry(val_name)
        img = crop_to_image(
            coords,
            batch["center"].cpu().numpy(),
            batch["scale"].cpu().numpy(),
            tuple(dm.input_size),
            use_udp=entry.codec == "udp",
        )
        return np.concatenate([img, scores[..., None]], axis=-1).astype(np.float32)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        dm = self._datamodule()
        val_name = dm.dataset_names[dataloader_idx]
        images = batch["image"]
        ids = {
            "ann_ids": batch["ann_id"].cpu().numpy(),
            "image_ids": batch["image_id"].cpu().numpy(),
            "bbox_scores": batch["bbox_score"].cpu().numpy(),
            "areas": batch["area"].cpu().numpy(),
        }
        cache: dict = {}
        own = self.dataset_names.index(val_name)
        preds = self._to_image(self._head_heatmaps(images, own, cache), val_name, val_name, batch)
        self._evaluators[val_name].update(preds, **ids)
        for head_name, evaluator in self._cross.get(val_name, {}).items():
            hidx = self.dataset_names.index(head_name)
            preds = self._to_image(self._head_heatmaps(images, hidx, cache), head_name, val_name, batch)
            evaluator.update(preds, **ids)

    def _gather(self, evaluator) -> None:
        """Merge evaluator states across ranks (DDP validation)."""
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            states: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(states, evaluator.state())
            evaluator.merge(states)

    def on_validation_epoch_end(self) -> None:
        if not self._evaluators:
            return
        out_dir = Path(self.trainer.default_root_dir) / "results"
        metrics: dict[str, float] = {}
        primaries = []
        for name, evaluator in self._evaluators.items():
            self._gather(evaluator)
            result = evaluator.compute(out_dir if self.trainer.is_global_zero else None)
            for key, value in result.items():
                metrics[f"val/{name}/{key}"] = float(value)
            primary = PRIMARY_METRIC[evaluator.metric]
            if primary in result:
                primaries.append(float(result[primary]))
            for cross in self._cross.get(name, {}).values():
                self._gather(cross)
                for key, value in cross.compute().items():
                    metrics[f"val/{name}/{key}"] = float(value)
        metrics["val/score"] = float(np.mean(primaries)) if primaries else float("nan")
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
        )
