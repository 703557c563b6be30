"""Knowledge-token distillation (ViTPose §3.4, Table 9): a big teacher's knowledge passed to a small student.

Stage 1 (:class:`TokenLearningLitModule`, ``+distill=token_learning``): the trained teacher is frozen (weights,
BatchNorm statistics, eval mode) and K knowledge tokens appended to its patch tokens are the only trainable
parameters, optimised with the usual per-head target-weighted heatmap MSE against the ground truth of the mix
(eq. 7, ``t* = argmin_t MSE(T({t; X}), K_gt)``). The token is written to ``distill.out`` after every epoch.

Stage 2 (:class:`TokenDistillLitModule`, ``+distill=student``): the student trains as usual with the frozen
token appended (eq. 8). With ``distill.output_weight = w > 0`` a frozen teacher also runs (eval mode, no grad)
and ``w * MSE(student heatmaps, teacher heatmaps)`` is added (eq. 9 is ``w = 1``). The output-distillation MSE
covers every keypoint of the head's skeleton (the teacher also speaks for unlabelled keypoints); the
per-dataset batch share and ``loss.dataset_weights`` apply to it as to the ground-truth term. Either part can be
switched off: ``token_path: null`` is plain heatmap distillation (Table 9 row 3).

The teacher must have the mix's heads: same dataset names, order and keypoint counts (head ``i`` and expert ``i``
belong to dataset ``i``). Paper numbers (ViTPose-L -> ViTPose-B, COCO val): 75.8 AP baseline, 76.0 with the
token, 76.3 with heatmap distillation, 76.6 with both.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from multipose.lit_module import PoseLitModule
from multipose.losses import keypoint_mse
from multipose.models.knowledge_token import (
    KnowledgeTokenBackbone,
    attach_knowledge_tokens,
    load_knowledge_token,
    project_token,
    save_knowledge_token,
)
from multipose.models.pose_model import PoseModel

__all__ = [
    "TokenLearningLitModule",
    "TokenDistillLitModule",
    "build_distill_module",
    "load_teacher",
    "STAGES",
]

log = logging.getLogger(__name__)

STAGES = ("token_learning", "student")
TOKEN_CONFIG_KEY = "knowledge_tokens"  # model_config["backbone"][...]: number of knowledge tokens


def load_teacher(
    path: str | Path | None, field: str = "distill.teacher_ckpt"
) -> tuple[PoseModel, dict[str, Any]]:
    """A frozen teacher (eval mode, ``requires_grad=False``) and its model config, from any checkpoint that
    :func:`multipose.models.loading.load_pose_model` reads. ``field`` names the option in errors."""
    if not path:
        raise ValueError(f"{field} is not set; give the path of the trained teacher checkpoint (.ckpt / .pt)")
    if not Path(str(path)).is_file():
        raise FileNotFoundError(
            f"{field}={path}: no such file; give the path of the trained teacher checkpoint"
        )
    from multipose.models.checkpoints import convert_checkpoint
    from multipose.models.loading import build_from_result

    result = convert_checkpoint(path, field=field)
    teacher = build_from_result(result).eval().requires_grad_(False)
    return teacher, copy.deepcopy(dict(result.model_config))


def _heads_signature(model_config: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(name, int(spec["num_keypoints"])) for name, spec in model_config["heads"].items()]


def _check_teacher(teacher_config: Mapping[str, Any], model_config: Mapping[str, Any], path: Any) -> None:
    """The teacher must predict the mix: same dataset names, order and K; same input size."""
    have, want = _heads_signature(teacher_config), _heads_signature(model_config)
    if have != want:
        raise ValueError(
            f"distill.teacher_ckpt={path}: the teacher's heads (dataset, K) {have} do not match the data mix {want}; "
            "the teacher must be trained on the same datasets, in the same order"
        )
    t_size = teacher_config.get("backbone", {}).get("img_size")
    s_size = model_config.get("backbone", {}).get("img_size")
    if t_size is not None and s_size is not None and [int(v) for v in t_size] != [int(v) for v in s_size]:
        raise ValueError(
            f"distill.teacher_ckpt={path}: the teacher was built for input {list(t_size)} but the data gives "
            f"{list(s_size)}; set data.input_size (and data.heatmap_size) to the teacher's"
        )


def _without_tokens(model_config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(dict(model_config))
    cfg["backbone"] = dict(cfg["backbone"])
    cfg["backbone"].pop(TOKEN_CONFIG_KEY, None)
    return cfg


def _with_tokens(model_config: Mapping[str, Any], num_tokens: int) -> dict[str, Any]:
    cfg = _without_tokens(model_config)
    cfg["backbone"][TOKEN_CONFIG_KEY] = int(num_tokens)
    return cfg


# ------------------------------------------------------------------------------------------------ stage 1


class TokenLearningLitModule(PoseLitModule):
    """Stage 1: learn K knowledge tokens on a frozen teacher (only the token is optimised).

    Args:
        model_config: the mix's model config (from ``train.py``); only its heads and input size are used, to
            check that the teacher fits the data.
        optim, loss, evaluation: as :class:`PoseLitModule` (loss weights and validation apply; the optimiser is
            AdamW on the token alone, see ``distill``).
        distill: ``teacher_ckpt`` (path, required), ``num_tokens`` (K, default 1), ``lr`` (default 1e-3),
            ``weight_decay`` (default 0), ``out`` (token file, ``.pt`` or ``.safetensors``; default
            ``<run dir>/knowledge_token.pt``).

    ``self.model`` is the teacher with the token attached; its checkpoint config records ``knowledge_tokens: K``.
    """

    def __init__(
        self,
        model_config: Mapping[str, Any],
        optim: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        distill: Mapping[str, Any] | None = None,
    ) -> None:
        d = dict(distill or {})
        teacher, teacher_config = load_teacher(d.get("teacher_ckpt"))
        _check_teacher(teacher_config, model_config, d.get("teacher_ckpt"))
        num_tokens = int(d.get("num_tokens", 1))
        if num_tokens < 1:
            raise ValueError(f"distill.num_tokens must be >= 1, got {num_tokens}")
        if isinstance(teacher.backbone, KnowledgeTokenBackbone):
            raise ValueError(
                f"distill.teacher_ckpt={d.get('teacher_ckpt')} already carries knowledge tokens; "
                "give the plain teacher checkpoint"
            )
        super().__init__(_without_tokens(teacher_config), optim, loss, evaluation)
        attach_knowledge_tokens(teacher, num_tokens=num_tokens, trainable=True)
        self.model = teacher
        self.model_config = _with_tokens(teacher_config, num_tokens)
        self.hparams["model_config"] = self.model_config
        self.distill_cfg = d
        self.lr = float(d.get("lr", 1e-3))
        self.weight_decay = float(d.get("weight_decay", 0.0))
        if self.lr <= 0:
            raise ValueError(f"distill.lr must be > 0, got {self.lr}")

    @property
    def knowledge_token(self) -> torch.nn.Parameter:
        """The trainable token ``[1, K, C_teacher]``."""
        return self.model.backbone.knowledge_token

    def train(self, mode: bool = True) -> TokenLearningLitModule:
        """The teacher always stays in eval mode (no drop path, frozen BatchNorm statistics)."""
        super().train(mode)
        self.model.eval()
        return self

    def configure_optimizers(self):
        return torch.optim.AdamW([self.knowledge_token], lr=self.lr, weight_decay=self.weight_decay)

    def token_path(self) -> Path:
        out = self.distill_cfg.get("out")
        if out:
            return Path(str(out))
        root = self.trainer.default_root_dir if self._trainer is not None else "."
        return Path(root) / "knowledge_token.pt"

    def save_token(self, path: str | Path | None = None) -> Path:
        """Write the token ``[K, C]`` (see :func:`multipose.models.knowledge_token.save_knowledge_token`)."""
        path = Path(path) if path is not None else self.token_path()
        meta = {
            "teacher_ckpt": str(self.distill_cfg.get("teacher_ckpt")),
            "global_step": int(self.global_step),
        }
        return save_knowledge_token(path, self.knowledge_token, meta)

    def on_train_epoch_end(self) -> None:
        if self.trainer.is_global_zero:
            path = self.save_token()
            log.info("epoch %d: knowledge token written to %s", self.current_epoch, path)


# ------------------------------------------------------------------------------------------------ stage 2


class TokenDistillLitModule(PoseLitModule):
    """Stage 2: train the student with the frozen knowledge token, optionally plus heatmap distillation.

    Args:
        model_config, optim, loss, evaluation: as :class:`PoseLitModule` (the student).
        distill: ``token_path`` (stage-1 token file or null), ``projection`` (``none`` | ``orthogonal``, for a
            teacher width != student width), ``projection_seed`` (0), ``teacher_ckpt`` (needed when
            ``output_weight > 0``), ``output_weight`` (w >= 0; 0 = off).

    The frozen token lives in the student (``model.backbone.knowledge_token``) and is part of the student
    network at inference; the checkpoint config records ``backbone.knowledge_tokens: K``. The teacher is kept
    outside the module's children: it is not saved in checkpoints, not optimised and never set to train mode.
    """

    def __init__(
        self,
        model_config: Mapping[str, Any],
        optim: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        distill: Mapping[str, Any] | None = None,
    ) -> None:
        d = dict(distill or {})
        weight = float(d.get("output_weight", 0.0) or 0.0)
        token_path = d.get("token_path")
        if weight < 0:
            raise ValueError(f"distill.output_weight must be >= 0 (0 = off), got {weight}")
        if not token_path and weight == 0:
            raise ValueError(
                "distill: nothing to distil; set distill.token_path (stage-1 token) and/or "
                "distill.output_weight > 0 with distill.teacher_ckpt"
            )
        teacher = None
        if weight > 0:
            if not d.get("teacher_ckpt"):
                raise ValueError(
                    f"distill.output_weight={weight} needs distill.teacher_ckpt (the teacher whose heatmaps "
                    "the student imitates); set it or use output_weight=0"
                )
            teacher, teacher_config = load_teacher(d.get("teacher_ckpt"))
            _check_teacher(teacher_config, model_config, d.get("teacher_ckpt"))
        super().__init__(_without_tokens(model_config), optim, loss, evaluation)
        self.output_weight = weight
        self.distill_cfg = d
        if token_path:
            token, _ = load_knowledge_token(token_path, field="distill.token_path")
            embed_dim = int(self.model.backbone.embed_dim)
            try:
                token = project_token(
                    token, embed_dim, str(d.get("projection") or "none"), int(d.get("projection_seed", 0))
                )
            except ValueError as err:
                raise ValueError(f"distill.token_path={token_path}: {err}") from None
            attach_knowledge_tokens(self.model, token=token, trainable=False)
            self.model_config = _with_tokens(self.model_config, token.shape[0])
        self.hparams["model_config"] = self.model_config  # what load_pose_model rebuilds
        # a tuple keeps the teacher out of the module's children (state dict, optimiser, .train())
        self._teacher: tuple[PoseModel, ...] = (teacher,) if teacher is not None else ()

    @property
    def teacher(self) -> PoseModel | None:
        """The frozen teacher, moved to the student's device and dtype on use (None without output distillation)."""
        if not self._teacher:
            return None
        teacher = self._teacher[0]
        ref = next(self.model.parameters())
        t_ref = next(teacher.parameters())
        if t_ref.device != ref.device or t_ref.dtype != ref.dtype:
            teacher.to(device=ref.device, dtype=ref.dtype)
        return teacher.eval()

    def output_distill_losses(
        self, batch: dict[str, torch.Tensor], preds: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``{dataset: MSE(student heatmaps, teacher heatmaps)}`` for the datasets in ``preds``
        (``preds[name]`` = the student's heatmaps of dataset ``name``'s samples, in batch order)."""
        teacher = self.teacher
        if teacher is None:
            raise RuntimeError("output distillation needs distill.teacher_ckpt and distill.output_weight > 0")
        with torch.no_grad():
            targets = teacher.routed_heatmaps(batch["image"], batch["dataset_idx"])
        out = {}
        for name, pred in preds.items():
            _, target = targets[name]
            if target.shape != pred.shape:
                raise ValueError(
                    f"output distillation on {name!r}: teacher heatmaps {tuple(target.shape)} vs student "
                    f"{tuple(pred.shape)}; teacher and student need the same input and heatmap size"
                )
            out[name] = keypoint_mse(pred, target.detach(), pred.new_ones(pred.shape[:2]))
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.output_weight == 0:
            return super().training_step(batch, batch_idx)  # token distillation only: the usual loss
        gt_total, preds, shares = self.supervised_loss(batch)
        batch_size = batch["image"].shape[0]
        kd_total = gt_total.new_zeros(())
        for name, kd in self.output_distill_losses(batch, preds).items():
            self.log(f"train/{name}/distill", kd.detach(), batch_size=int(preds[name].shape[0]))
            kd_total = kd_total + shares[name] * kd
        loss = float(self.loss_cfg.get("heatmap", 1.0)) * gt_total + self.output_weight * kd_total
        self.log("train/distill", kd_total.detach(), batch_size=batch_size)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        return loss


# ------------------------------------------------------------------------------------------------- factory


def build_distill_module(cfg: Any, model_config: Mapping[str, Any]) -> L.LightningModule:
    """The LightningModule for ``cfg.distill.stage`` (``token_learning`` | ``student``), for ``train.py``.

    ``cfg`` is the composed training config (``distill``, ``optim``, ``loss``, ``evaluation``, ``backbone``,
    ``init_from`` are read); ``model_config`` is the mix's model config from ``build_model_config``.
    """
    from omegaconf import OmegaConf

    from multipose.config_validation import ConfigError

    def plain(node: Any) -> dict[str, Any]:
        if node is None:
            return {}
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)

    d = plain(cfg.get("distill"))
    stage = d.get("stage")
    if stage not in STAGES:
        raise ConfigError(
            f"distill.stage={stage!r} is unknown; use +distill=token_learning or +distill=student"
        )
    kwargs = dict(
        optim=plain(cfg.get("optim")),
        loss=plain(cfg.get("loss")),
        evaluation=plain(cfg.get("evaluation")),
        distill=d,
    )
    if stage == "token_learning":
        backbone = cfg.get("backbone") or {}
        for key, value in (("backbone.init", backbone.get("init")), ("init_from", cfg.get("init_from"))):
            if value:
                raise ConfigError(
                    f"{key}={value} cannot be used with distill.stage=token_learning: the frozen teacher comes "
                    "from distill.teacher_ckpt; set it to null"
                )
        return TokenLearningLitModule(model_config, **kwargs)
    return TokenDistillLitModule(model_config, **kwargs)
