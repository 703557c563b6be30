"""Staged training: the StageSchedule callback (freeze / thaw per epoch, a pure function of the epoch), the MDPN
stage configs, and resume in the middle of a staged run."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import compose
from multipose.models import build_pose_model
from multipose.models.optim import build_optimizer
from multipose.training import StageSchedule, build_stage_callback, loss_enabled
from train_helpers import (
    ddp_spawn_trainer,
    load_state,
    probe_overrides,
    run_config,
    run_train_cli,
    stop_after_overrides,
)

SMOKE = ["+experiment=smoke", "trainer.enable_model_summary=false"]
CKPT = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]


# ------------------------------------------------------------------------------------------------ pure parts


def test_stage_boundaries_are_fractions_or_epochs_and_a_pure_function_of_the_epoch():
    cb = StageSchedule([{"start_epoch": 0}, {"start_epoch": 0.5, "frozen": ["backbone"]}, {"start_epoch": 9}])
    stages = cb.resolve(max_epochs=10)
    assert [s.start_epoch for s in stages] == [0, 5, 9]
    assert [cb.stage_at(stages, e).index for e in range(11)] == [0] * 5 + [1] * 4 + [2] * 2
    late = StageSchedule([{"start_epoch": 2, "frozen": ["heads"]}]).resolve(10)
    assert StageSchedule.stage_at(late, 1).frozen == frozenset()  # nothing frozen before the first stage
    # same start: the later stage wins (turns a two-stage schedule into its second stage)
    same = StageSchedule([{"start_epoch": 0}, {"start_epoch": 0, "frozen": ["backbone"]}]).resolve(4)
    assert StageSchedule.stage_at(same, 0).frozen == {"backbone"}


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        (
            [{"start_epoch": 5}, {"start_epoch": 0.2}],
            r"stages\[1\].start_epoch=0.2 resolves to epoch 2, before",
        ),
        ([{"start_epoch": 1, "freeze": ["backbone"]}], r"stages\[0\] has unknown keys \['freeze'\]"),
        ([{"frozen": ["backbone"]}], r"stages\[0\] needs start_epoch"),
        ([{"start_epoch": 1.5}], r"start_epoch=1.5: give a whole epoch number"),
        ([{"start_epoch": 0, "frozen": "backbone"}], r"stages\[0\].frozen must be a list"),
    ],
)
def test_bad_stage_configs_are_named(stages, match):
    with pytest.raises(ValueError, match=match):
        StageSchedule(stages).resolve(max_epochs=10)


def test_fraction_without_max_epochs_is_an_error():
    with pytest.raises(ValueError, match="fraction of trainer.max_epochs"):
        StageSchedule([{"start_epoch": 0.5}]).resolve(max_epochs=-1)


def test_loss_enabled():
    assert loss_enabled(None, "heatmap", "a")
    assert loss_enabled({"heatmap"}, "heatmap", "a")
    assert loss_enabled({"heatmap.a"}, "heatmap", "a") and not loss_enabled({"heatmap.a"}, "heatmap", "b")
    assert not loss_enabled({"heatmap"}, "consistency", "a")


def test_shipped_stage_configs_compose():
    head_ft = build_stage_callback(compose("train", ["+stage=mdpn_head_ft"]))
    stages = head_ft.resolve(max_epochs=20)
    assert [s.start_epoch for s in stages] == [0, 18]
    assert stages[1].frozen == {"backbone", "experts"} and stages[1].losses_on == {"heatmap"}
    two = build_stage_callback(compose("train", ["+stage=mdpn_two_step", "stage.target=syn_coco"]))
    target_ft, others = two.resolve(max_epochs=155)[1:]
    assert (target_ft.start_epoch, others.start_epoch) == (119, 135)
    assert target_ft.frozen == frozenset() and target_ft.losses_on == {"heatmap.syn_coco"}
    assert others.frozen == {"backbone", "experts", "heads.syn_coco"}
    with pytest.raises(ValueError, match="stage.target is not set"):
        build_stage_callback(compose("train", ["+stage=mdpn_two_step"]))
    assert build_stage_callback(compose("train", [])) is None


# ------------------------------------------------------------------------------------------------ the mechanism


class _Toy(L.LightningModule):
    """A tiny PoseModel (MoE backbone, BatchNorm heads) on random tensors, AdamW with weight decay."""

    def __init__(self, max_epochs: int):
        super().__init__()
        torch.manual_seed(0)
        self.model = build_pose_model(
            {"a": "coco", "b": "mpii"},
            backbone="vit_tiny",
            head="classic",
            ffn="ps",
            img_size=(32, 32),
            embed_dim=32,
            depth=2,
            num_heads=2,
            drop_path_rate=0.2,
            head_kwargs={"num_deconv_filters": (8, 8)},
        )
        self.max_epochs = max_epochs
        self.seen_losses_on: list = []
        self.seen_frozen: list = []
        self.modes: list[tuple[bool, bool, bool]] = []

    def training_step(self, batch, batch_idx):
        images, didx = batch
        self.seen_losses_on.append(getattr(self, "losses_on", "unset"))
        self.seen_frozen.append(getattr(self.model, "frozen_parts", "unset"))
        self.modes.append(
            (self.model.backbone.training, self.model.heads["a"].training, self.model.heads["b"].training)
        )
        out = self.model.heatmaps(images, didx)
        return sum(h.square().mean() for h in out.values())

    def configure_optimizers(self):
        cfg = {"lr": 1e-2, "weight_decay": 0.5, "layer_decay": 1.0, "warmup_iters": 0, "milestones": []}
        return build_optimizer(self.model, cfg, batch_size=None, total_steps=100, max_epochs=self.max_epochs)


def _toy_fit(stages, max_epochs=2, snapshots=None):
    data = torch.utils.data.TensorDataset(torch.randn(8, 3, 32, 32), torch.tensor([0, 1] * 4))
    module = _Toy(max_epochs)

    class Snap(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if snapshots is not None:
                snapshots.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StageSchedule(stages), Snap()],
        num_sanity_val_steps=0,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    return module, trainer


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return {k for k in keys if not torch.equal(before[k], after[k])}


def test_frozen_parts_get_no_update_no_weight_decay_and_stay_in_eval_mode():
    """Epoch 0 trains everything (AdamW builds momentum for every parameter); epoch 1 freezes the backbone, the
    experts and head ``a``: they stay bit-identical although AdamW has momentum and weight decay 0.5 for them,
    their BatchNorm statistics do not move, and head ``b`` keeps training."""
    snaps: list = []
    stages = [
        {"start_epoch": 0},
        {"start_epoch": 1, "frozen": ["backbone", "experts", "heads.a"], "losses_on": ["heatmap.b"]},
    ]
    module, trainer = _toy_fit(stages, max_epochs=2, snapshots=snaps)
    end = {k: v.detach() for k, v in module.model.state_dict().items()}
    start, mid = snaps
    assert _changed(start, mid, "backbone.") and _changed(start, mid, "heads.a.")  # epoch 0 trained them
    assert not _changed(mid, end, "backbone.")  # shared weights and experts alike
    assert not _changed(mid, end, "heads.a.")  # weights and BatchNorm running statistics
    assert _changed(mid, end, "heads.b.")
    assert module.seen_frozen == [frozenset()] * 2 + [{"backbone", "experts", "heads.a"}] * 2
    assert module.model.frozen_parts == frozenset() and module.losses_on is None  # reset after fitting
    assert module.model.heads["a"].training  # back in train mode after fitting
    assert (
        module.seen_losses_on[:2] == [None, None]
        and module.seen_losses_on[2:] == [frozenset({"heatmap.b"})] * 2
    )
    # modes (backbone, head a, head b) per step: all training, then frozen parts in eval mode
    assert module.modes == [(True, True, True)] * 2 + [(False, False, True)] * 2
    opt = trainer.optimizers[0]
    frozen = module.model.backbone.patch_embed.proj.weight
    assert opt.state[frozen]["step"] == 2  # only the two steps of epoch 0


def test_thaw_trains_again_and_backbone_with_live_experts_stays_in_train_mode():
    snaps: list = []
    stages = [{"start_epoch": 0, "frozen": ["backbone"]}, {"start_epoch": 1}]
    module, _ = _toy_fit(stages, max_epochs=2, snapshots=snaps)
    start, mid = snaps
    end = module.model.state_dict()
    shared = _changed(start, mid, "backbone.")
    assert shared and all(".experts." in k for k in shared)  # only the experts trained in epoch 0
    assert {k for k in _changed(mid, end, "backbone.") if ".experts." not in k}  # thawed in epoch 1
    assert module.modes[0] == (True, True, True)  # experts still train: drop path stays on


def test_unknown_part_is_named_with_the_valid_parts():
    with pytest.raises(
        ValueError, match=r"stage.stages\[1\].frozen: unknown model part\(s\) \['neck'\].*heads.a"
    ):
        _toy_fit([{"start_epoch": 0}, {"start_epoch": 1, "frozen": ["neck"]}], max_epochs=2)
    with pytest.raises(ValueError, match=r"losses_on: 'heatmap.c' names dataset 'c'"):
        _toy_fit([{"start_epoch": 0, "losses_on": ["heatmap.c"]}], max_epochs=1)


# ------------------------------------------------------------------------------------------------ tiny world


def test_mdpn_head_ft_keeps_the_backbone_and_resume_continues_the_stage(tmp_path, tiny_world):
    """``+stage=mdpn_head_ft`` with the head stage from epoch 1 of 3. The backbone trains in epoch 0 and is
    bit-identical from then on while the heads train; a run interrupted after epoch 2 (inside the head stage)
    and resumed from its last.ckpt continues the head stage."""
    from multipose.train import train

    stage = [*SMOKE, *CKPT, "trainer.max_epochs=3", "+stage=mdpn_head_ft", "stage.stages.1.start_epoch=1"]
    probe_a, probe_b = probe_overrides(tmp_path / "pa"), probe_overrides(tmp_path / "pb")
    train(
        run_config(tmp_path / "a", tiny_world, [*stage, *stop_after_overrides(2), *probe_a], validate=False)
    )
    resume = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(resume, weights_only=True)["global_step"] == 8
    train(run_config(tmp_path / "b", tiny_world, [*stage, f"ckpt_path={resume}", *probe_b], validate=False))
    e0, e1, a_end = (load_state(tmp_path / "pa" / f"rank0_{w}.pt") for w in ("epoch0", "epoch1", "end"))
    e2, b_end = (load_state(tmp_path / "pb" / f"rank0_{w}.pt") for w in ("epoch2", "end"))
    backbone = [k for k in e0 if k.startswith("backbone.")]
    heads = [k for k in e0 if k.startswith("heads.")]
    assert backbone and heads
    assert any(not torch.equal(e0[k], e1[k]) for k in backbone)  # joint stage: the backbone trained
    for key in backbone:  # head stage, before and after the resume
        assert torch.equal(e1[key], a_end[key]) and torch.equal(e1[key], e2[key]), key
        assert torch.equal(e1[key], b_end[key]), key
    assert any(not torch.equal(e1[k], a_end[k]) for k in heads)
    assert any(not torch.equal(e2[k], b_end[k]) for k in heads)  # the resumed run trained the heads


# ------------------------------------------------------------------------------------------------ DDP


@pytest.mark.slow
def test_ddp_frozen_backbone_stage_two_processes(tmp_path, tiny_world):
    probe = tmp_path / "probe"
    args = [
        *SMOKE,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "model.head_bn=batch",  # every head on the whole per-rank batch (the ViTPose++ setting)
        "+stage=mdpn_head_ft",
        "stage.stages.1.start_epoch=0",
        *probe_overrides(probe),
        f"paths.root_dir={tmp_path}",
        f"data.root={tiny_world}",
        "print_config=false",
    ]
    run_train_cli(args, check=True)
    states = {(r, w): load_state(probe / f"rank{r}_{w}.pt") for r in (0, 1) for w in ("epoch0", "end")}
    keys = list(states[0, "epoch0"])
    for key in keys:
        for rank in (0, 1):
            if key.startswith("backbone."):
                assert torch.equal(states[rank, "epoch0"][key], states[rank, "end"][key]), (rank, key)
        assert torch.equal(states[0, "end"][key], states[1, "end"][key]), key  # ranks stay in sync
    assert any(
        not torch.equal(states[0, "epoch0"][k], states[0, "end"][k]) for k in keys if k.startswith("heads.")
    )


def test_frozen_stages_switch_on_ddp_find_unused_parameters():
    """Wholly frozen parts run under no_grad and produce no gradients; DDP must be told before it wraps the model."""
    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    assert not trainer.strategy._ddp_kwargs.get("find_unused_parameters", False)
    StageSchedule._ddp_find_unused(trainer)
    assert trainer.strategy._ddp_kwargs["find_unused_parameters"] is True


class _NoGradToy(_Toy):
    """Runs the backbone under ``no_grad`` while it is wholly frozen, as the PoseModel does; writes each rank's
    state at every epoch start and at the end."""

    def __init__(self, max_epochs: int, out: str):
        super().__init__(max_epochs)
        self.out = out

    def training_step(self, batch, batch_idx):
        images, didx = batch
        frozen = getattr(self.model, "frozen_parts", frozenset())
        with torch.set_grad_enabled(not {"backbone", "experts"} <= frozen):
            feats = self.model.backbone(images, didx)
        return sum(head(feats).square().mean() for head in self.model.heads.values())

    def _save(self, when):
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        torch.save(state, Path(self.out) / f"rank{self.global_rank}_{when}.pt")

    def on_train_epoch_start(self):
        self._save(f"epoch{self.current_epoch}")

    def on_fit_end(self):
        self._save("end")


@pytest.mark.slow
def test_ddp_backbone_under_no_grad_then_thawed(tmp_path):
    """Two spawned CPU processes: epoch 0 runs the frozen backbone under no_grad (DDP would fail at the second step
    without find_unused_parameters), epoch 1 thaws it; the ranks stay identical and the backbone moves only after
    the thaw."""
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 32, 32), torch.tensor([0, 1] * 8))
    module = _NoGradToy(max_epochs=2, out=str(tmp_path))
    stages = [{"start_epoch": 0, "frozen": ["backbone", "experts"]}, {"start_epoch": 1}]
    trainer = ddp_spawn_trainer(max_epochs=2, callbacks=[StageSchedule(stages)])
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    s = {
        (r, w): load_state(tmp_path / f"rank{r}_{w}.pt") for r in (0, 1) for w in ("epoch0", "epoch1", "end")
    }
    backbone = [k for k in s[0, "end"] if k.startswith("backbone.")]
    params = {n for n, _ in module.model.named_parameters()}  # BatchNorm statistics are per rank (no SyncBN)
    for key in params:
        assert torch.equal(s[0, "end"][key], s[1, "end"][key]), key
    for key in backbone:
        assert torch.equal(s[0, "epoch0"][key], s[0, "epoch1"][key]), key
    assert any(not torch.equal(s[0, "epoch1"][k], s[0, "end"][k]) for k in backbone)
