"""Staged training (freeze / thaw / fine-tune) as a Lightning callback whose state is a pure function of the epoch.

Config (``conf/stage/*.yaml``, used as ``+stage=<name>``)::

    stage:
      eval_frozen: true             # frozen parts behave as at inference (dropout, drop path, BatchNorm statistics)
      stages:
        - {start_epoch: 0}                                     # everything trains, every loss on
        - {start_epoch: 0.9, frozen: [backbone, experts]}      # last 10 % of the epochs: heads only

``start_epoch`` is an epoch number, or a fraction (< 1) of ``trainer.max_epochs``; before the first stage nothing
is frozen. ``frozen`` lists model parts (:mod:`multipose.models.parts`: ``backbone``, ``experts``,
``experts.<dataset>``, ``heads``, ``heads.<dataset>``, ...; ``bridges.<name>[.<part>]`` for a bridge's module or
state, e.g. ``bridges.posebh.prototypes``). ``losses_on`` lists the loss terms that count in the
stage (``heatmap``, or ``heatmap.<dataset>`` for one dataset's supervised loss; ``null``/absent = every term);
the LightningModule asks :func:`loss_enabled`.

How freezing works. ``requires_grad`` is never toggled: DDP fixes the set of parameters it synchronises when it
wraps the model, so a part thawed later would silently stop being synchronised. Instead the callback

* sets ``pl_module.model.frozen_parts`` (a frozenset of part names; the model runs wholly frozen parts under
  ``torch.no_grad()``) and ``pl_module.losses_on`` (a frozenset, or ``None`` for all terms);
* sets the gradients of frozen parameters to ``None`` in ``on_before_optimizer_step`` (after backward and the
  DDP all-reduce, before gradient clipping and the step), so AdamW skips them: no update, no weight decay, no
  change of their moment estimates;
* with ``eval_frozen`` (default), puts the frozen heads (and the backbone, when it is frozen with all its experts)
  in eval mode before every training batch. Re-applying it per batch is what makes it robust: Lightning switches
  the whole module to train mode at the start of fitting and after every validation loop. A backbone whose
  experts still train stays in train mode (drop path wraps shared and expert weights alike);
* under DDP, switches on ``find_unused_parameters`` before the model is wrapped when a stage freezes parts or
  switches losses off (parts run under ``no_grad``, or heads whose only loss is off, produce no gradients, which
  DDP otherwise reports as an error at the next step).

The stage of an epoch depends on nothing but the epoch and ``trainer.max_epochs``, so resuming from any
checkpoint continues the stage the interrupted run was in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L

from multipose.models.optim import resolve_epoch
from multipose.models.parts import check_part_names, part_modules, select_parameters

__all__ = ["Stage", "StageSchedule", "build_stage_callback", "loss_enabled"]

log = logging.getLogger(__name__)

_STAGE_KEYS = {"start_epoch", "frozen", "losses_on", "name"}


def loss_enabled(losses_on: Iterable[str] | None, term: str, dataset: str | None = None) -> bool:
    """Whether loss ``term`` (for ``dataset``) counts in the current stage: ``losses_on`` is ``None`` (every term),
    or names ``term`` or ``term.<dataset>``."""
    if losses_on is None:
        return True
    on = set(losses_on)
    return term in on or (dataset is not None and f"{term}.{dataset}" in on)


@dataclass(frozen=True)
class Stage:
    """One resolved stage: from ``start_epoch`` (an epoch number) until the next stage starts."""

    index: int
    start_epoch: int
    frozen: frozenset[str] = frozenset()
    losses_on: frozenset[str] | None = None
    name: str = ""

    def describe(self) -> str:
        frozen = ", ".join(sorted(self.frozen)) or "nothing"
        losses = "all" if self.losses_on is None else ", ".join(sorted(self.losses_on)) or "none"
        if self.index < 0:
            return "before the first stage: nothing frozen; losses all"
        label = f" ({self.name})" if self.name else ""
        return f"stage {self.index}{label} from epoch {self.start_epoch}: frozen {frozen}; losses {losses}"


_NO_STAGE = Stage(index=-1, start_epoch=0)


def _bridge_part_names(pl_module: Any) -> list[str]:
    """``bridges.<name>`` and ``bridges.<name>.<child | parameter | buffer>`` of the module's bridges."""
    out = []
    for name, bridge in dict(getattr(pl_module, "bridges", None) or {}).items():
        out.append(f"bridges.{name}")
        for attr, _ in [
            *bridge.named_children(),
            *bridge.named_parameters(recurse=False),
            *bridge.named_buffers(recurse=False),
        ]:
            out.append(f"bridges.{name}.{attr}")
    return out


def check_bridge_parts(pl_module: Any, names: Iterable[str], where: str) -> None:
    """Stage entries ``bridges.<name>[.<part>]`` must name a bridge of the module (and one of its parts); a bridge
    reads its own flag with :meth:`~multipose.bridges.base.Bridge.is_frozen` (e.g. PoseBH's prototypes stop their
    EMA), and the stage drops the gradients of the part's parameters like those of a frozen model part."""
    valid = _bridge_part_names(pl_module)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(
            f"{where}: unknown bridge part(s) {unknown}; this run's bridges have {valid or 'none (add +bridge=<name>)'}"
        )


def bridge_parameters(pl_module: Any, names: Iterable[str]) -> list:
    """Parameters of the bridge parts among ``names`` (``bridges.<name>[.<part>]``)."""
    wanted = [n for n in names if n.startswith("bridges.")]
    bridges = getattr(pl_module, "bridges", None)
    if not wanted or bridges is None:
        return []
    return [
        p
        for n, p in bridges.named_parameters(prefix="bridges")
        if any(n == w or n.startswith(w + ".") for w in wanted)
    ]


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{where} must be a list of names, got {value!r}")
    return [str(v) for v in value]


class StageSchedule(L.Callback):
    """Freeze / thaw model parts and switch loss terms per epoch (see the module docstring).

    Args:
        stages: list of ``{start_epoch, frozen, losses_on, name}`` mappings, in increasing ``start_epoch``.
        eval_frozen: keep frozen parts in eval mode during training (dropout / drop path off, BatchNorm running
            statistics used and left unchanged).
    """

    def __init__(self, stages: Sequence[Mapping[str, Any]], eval_frozen: bool = True) -> None:
        if not stages:
            raise ValueError(
                "stage.stages is empty; give at least one {start_epoch, frozen, losses_on} entry"
            )
        self.spec: list[dict[str, Any]] = []
        for i, raw in enumerate(stages):
            where = f"stage.stages[{i}]"
            if not isinstance(raw, Mapping):
                raise ValueError(
                    f"{where} must be a mapping with start_epoch, frozen, losses_on; got {raw!r}"
                )
            unknown = sorted(set(raw) - _STAGE_KEYS)
            if unknown:
                raise ValueError(f"{where} has unknown keys {unknown}; allowed: {sorted(_STAGE_KEYS)}")
            if "start_epoch" not in raw:
                raise ValueError(
                    f"{where} needs start_epoch (an epoch number, or a fraction < 1 of max_epochs)"
                )
            losses = raw.get("losses_on")
            self.spec.append(
                {
                    "start_epoch": float(raw["start_epoch"]),
                    "frozen": _names(raw.get("frozen"), f"{where}.frozen"),
                    "losses_on": None if losses is None else _names(losses, f"{where}.losses_on"),
                    "name": str(raw.get("name") or ""),
                }
            )
        self.eval_frozen = bool(eval_frozen)
        self.stages: list[Stage] | None = None
        self.current: Stage = _NO_STAGE
        self._frozen_params: list = []
        self._eval_modules: list = []

    # ---------------------------------------------------------------- the pure part
    def resolve(self, max_epochs: int | None) -> list[Stage]:
        """The stages with epoch boundaries resolved against ``max_epochs``; in order or an error. Stages that
        start at the same epoch are allowed (the later one wins), so ``stage.stages.1.start_epoch=0`` turns a
        two-stage schedule into its second stage for the whole run (e.g. head fine-tuning after ``init_from``)."""
        out = []
        for i, s in enumerate(self.spec):
            start = resolve_epoch(s["start_epoch"], max_epochs, f"stage.stages[{i}].start_epoch")
            if out and start < out[-1].start_epoch:
                raise ValueError(
                    f"stage.stages[{i}].start_epoch={s['start_epoch']} resolves to epoch {start}, before stage "
                    f"{i - 1} (epoch {out[-1].start_epoch}) with max_epochs={max_epochs}; order the stages by "
                    "start_epoch"
                )
            losses = None if s["losses_on"] is None else frozenset(s["losses_on"])
            out.append(Stage(i, start, frozenset(s["frozen"]), losses, s["name"]))
        return out

    @staticmethod
    def stage_at(stages: Sequence[Stage], epoch: int) -> Stage:
        """The stage active in ``epoch`` (the last one started at or before it; none before the first)."""
        active = _NO_STAGE
        for stage in stages:
            if stage.start_epoch <= epoch:
                active = stage
        return active

    # ---------------------------------------------------------------- Lightning hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.stages = self.resolve(trainer.max_epochs)
        model = pl_module.model
        datasets = list(getattr(model, "dataset_names", []))
        terms = getattr(pl_module, "loss_terms", None)
        bridges = set(dict(getattr(pl_module, "bridges", None) or {}))
        for s in self.stages:
            model_parts = [n for n in s.frozen if not n.startswith("bridges.")]
            check_part_names(model, model_parts, f"stage.stages[{s.index}].frozen")
            check_bridge_parts(pl_module, set(s.frozen) - set(model_parts), f"stage.stages[{s.index}].frozen")
            for entry in s.losses_on or ():
                term, _, dataset = entry.partition(".")
                if term in bridges:  # <bridge>.<term>: the bridge's own loss term, not a dataset
                    continue
                if dataset and dataset not in datasets:
                    raise ValueError(
                        f"stage.stages[{s.index}].losses_on: {entry!r} names dataset {dataset!r}, which is not in "
                        f"the mix {datasets}"
                    )
                if terms is not None and term not in terms:
                    raise ValueError(
                        f"stage.stages[{s.index}].losses_on: unknown loss term {term!r}; this module has {list(terms)}"
                    )
            if s.losses_on is not None and not s.losses_on:
                raise ValueError(
                    f"stage.stages[{s.index}].losses_on is empty: no loss would train; use null for all"
                )
        log.info("training stages: %s", "; ".join(s.describe() for s in self.stages))
        if any(s.frozen or s.losses_on is not None for s in self.stages):
            self._ddp_find_unused(trainer)

    @staticmethod
    def _ddp_find_unused(trainer: L.Trainer) -> None:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy):
            kwargs = getattr(strategy, "_ddp_kwargs", None)
            if kwargs is None:
                raise RuntimeError(
                    "staged training with frozen parts under DDP needs find_unused_parameters=True; "
                    "set trainer.strategy=ddp_find_unused_parameters_true"
                )
            if not kwargs.get("find_unused_parameters", False):
                kwargs["find_unused_parameters"] = True
                log.info(
                    "staged training under DDP: find_unused_parameters switched on (frozen parts run without "
                    "grad, heads whose losses are off get none)"
                )

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Stage:
        """Make the module match the stage of ``trainer.current_epoch`` (idempotent; called before every batch)."""
        if self.stages is None:
            self.stages = self.resolve(trainer.max_epochs)
        stage = self.stage_at(self.stages, trainer.current_epoch)
        model = pl_module.model
        if stage is not self.current or getattr(model, "frozen_parts", None) != stage.frozen:
            previous = self._eval_modules
            self.current = stage
            model.frozen_parts = stage.frozen
            pl_module.losses_on = stage.losses_on
            self._frozen_params = [p for _, p in select_parameters(model, stage.frozen)]
            self._frozen_params += bridge_parameters(pl_module, stage.frozen)
            self._eval_modules = part_modules(model, stage.frozen) if self.eval_frozen else []
            keep = {id(m) for m in self._eval_modules}
            for module in previous:
                if id(module) not in keep:
                    module.train(pl_module.training)
            if trainer.is_global_zero:
                log.info("epoch %d: %s", trainer.current_epoch, stage.describe())
        for module in self._eval_modules:
            module.eval()
        return stage

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.apply(trainer, pl_module)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        for param in self._frozen_params:
            param.grad = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After fitting the module is as without stages (nothing frozen, every loss on, train/eval untouched)."""
        pl_module.model.frozen_parts = frozenset()
        pl_module.losses_on = None
        for module in self._eval_modules:
            module.train(pl_module.training)
        self.current, self._frozen_params, self._eval_modules = _NO_STAGE, [], []

    # ---------------------------------------------------------------- checkpoint: a record, not state
    def state_dict(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("spec") != self.spec:
            log.warning(
                "resuming with a different stage schedule than the checkpoint was trained with: %s (checkpoint) "
                "vs %s (now); the stage of each epoch follows the current config",
                state_dict.get("spec"),
                self.spec,
            )


def build_stage_callback(cfg: Mapping[str, Any]) -> StageSchedule | None:
    """The :class:`StageSchedule` of a run config's ``stage`` node, or ``None`` when the run has no stages."""
    node = cfg.get("stage") if hasattr(cfg, "get") else None
    if not node:
        return None
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        if "target" in node.keys() and OmegaConf.is_missing(node, "target"):
            raise ValueError(
                "stage.target is not set: this stage schedule needs the target dataset, e.g. stage.target=coco"
            )
        node = OmegaConf.to_container(node, resolve=True)
    unknown = sorted(set(node) - {"stages", "eval_frozen", "target", "description"})
    if unknown:
        raise ValueError(
            f"stage has unknown keys {unknown}; allowed: stages, eval_frozen, target, description"
        )
    if not node.get("stages"):
        return None
    return StageSchedule(node["stages"], eval_frozen=node.get("eval_frozen", True))
