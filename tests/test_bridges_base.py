"""The bridge plug-in point of the LightningModule: loss terms, stage gating, optimiser groups, variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multipose.bridges import base
from multipose.bridges.base import Bridge, build_bridges
from multipose.lit_module import PoseLitModule
from test_lit_module import make_batch, model_config


class ToyBridge(Bridge):
    """A bridge with one trainable scalar pulled towards 3 and a counter of finished steps."""

    name = "toy"
    variants = ("toy",)

    def __init__(self, settings, loss, model_config, mix=None):
        super().__init__(settings, loss, model_config, mix)
        self.value = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def training_losses(self, lit, batch, outputs):
        if not lit.loss_on("toy", "pull"):
            return {}
        return {"pull": float(self.loss_weights.get("pull", 1.0)) * (self.value - 3.0) ** 2}

    def after_training_step(self, lit, batch, outputs):
        self.steps += 1


@pytest.fixture()
def toy_registered(monkeypatch):
    monkeypatch.setitem(base.BRIDGES, "toy", f"{__name__}:ToyBridge")


def test_unknown_bridge_names_the_option():
    with pytest.raises(ValueError, match="bridge.nope"):
        build_bridges({"nope": {}}, {}, model_config(), None)


def test_bridge_terms_add_to_the_loss_train_and_are_stage_gated(toy_registered):
    torch.manual_seed(0)
    lit = PoseLitModule(model_config(), loss={"toy": {"pull": 2.0}}, bridge={"toy": {}})
    logged = {}
    lit.log = lambda key, value, **k: logged.__setitem__(key, float(value))
    batch = make_batch([0, 1, 2, 0])
    plain = PoseLitModule.supervised_loss(lit, batch)[0] * 1.0
    loss = lit.training_step(batch, 0)
    assert loss.item() == pytest.approx(plain.item() + 2.0 * 9.0, rel=1e-5)
    assert logged["train/toy/pull"] == pytest.approx(18.0)
    loss.backward()
    assert lit.bridges["toy"].value.grad.item() == pytest.approx(2.0 * 2 * (0 - 3.0))
    lit.on_train_batch_end(None, batch, 0)
    assert int(lit.bridges["toy"].steps) == 1
    lit.losses_on = frozenset({"heatmap"})  # a stage without the bridge's terms
    assert lit.training_step(batch, 0).item() == pytest.approx(plain.item(), rel=1e-5)
    lit.losses_on = frozenset({"heatmap", "toy.pull"})
    assert lit.training_step(batch, 0).item() == pytest.approx(plain.item() + 18.0, rel=1e-5)
    # the bridge's state is part of the module's checkpoint
    assert {"bridges.toy.value", "bridges.toy.steps"} <= set(lit.state_dict())


def test_bridge_parameters_get_their_own_optimizer_group(toy_registered):
    from multipose.models.optim import build_optimizer

    lit = PoseLitModule(model_config(), bridge={"toy": {}})
    opt = build_optimizer(
        lit.model,
        {"lr": 1e-3, "module_lr_mult": {"bridges.toy": 10.0}},
        batch_size=None,
        total_steps=10,
        max_epochs=1,
        extra_modules=dict(lit.bridges.items()),
    )["optimizer"]
    groups = [g for g in opt.param_groups if g["group_name"].startswith("bridges.toy")]
    assert len(groups) == 1 and groups[0]["params"][0] is lit.bridges["toy"].value
    assert groups[0]["initial_lr"] == pytest.approx(1e-2) and groups[0]["weight_decay"] == 0.0
    n_model = sum(len(g["params"]) for g in opt.param_groups) - 1
    assert n_model == sum(1 for p in lit.model.parameters() if p.requires_grad)


def test_mix_evaluation_scores_variants_like_the_heads(tiny_world):
    """A variant that repeats the heads' keypoints scores exactly what the heads score."""
    import hydra

    from conftest import compose
    from multipose.evaluation.mix import MixEvaluation
    from multipose.inference import MixSpec

    cfg = compose("train", [f"data.root={tiny_world}", "data.num_workers=0", "data.synthetic.config=tiny"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.setup("validate")
    spec = MixSpec.from_dict(dm.describe())
    plain = MixEvaluation(spec, dm.val_instances, {}, images=dm.val_image_ids)
    with_variant = MixEvaluation(spec, dm.val_instances, {}, images=dm.val_image_ids, variants=["toy"])
    rng = np.random.default_rng(0)
    for name in spec.names:
        for batch in dm.val_dataloader()[spec.names.index(name)]:
            b = len(batch["ann_id"])
            kpts = {}
            for head in plain.heads_for(name):
                k = spec.skeletons[head].num_keypoints
                xy = rng.uniform(0, 64, size=(b, k, 2))
                kpts[head] = np.concatenate([xy, rng.uniform(0.3, 1, size=(b, k, 1))], axis=-1)
            plain.update(name, batch, kpts)
            with_variant.update(name, batch, kpts, variants={"toy": kpts})
            with pytest.raises(ValueError, match="variant 'toy'"):
                with_variant.update(name, batch, kpts)
            break
    a, b = plain.compute(), with_variant.compute()
    for key, value in a.items():
        assert b[key] == pytest.approx(value, nan_ok=True)
        parts = key.split("/")
        if key.startswith("val/") and len(parts) == 3 and key != "val/score":
            assert b[f"val/{parts[1]}/toy/{parts[2]}"] == pytest.approx(value, nan_ok=True)
        if "/cross/" in key:
            head = parts[3]
            rest = "/".join(parts[4:])
            assert b[f"val/{parts[1]}/cross/{head}/toy/{rest}"] == pytest.approx(value, nan_ok=True)
