"""All-heads forward, head BatchNorm modes, frozen parts and MoE expert choice of the training step."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from multipose.lit_module import PoseLitModule
from multipose.losses import keypoint_mse
from multipose.models.head_options import cross_head_losses_active, resolve_heads_on

HEADS = {"syn_coco": ("coco", 17), "syn_mpii": ("mpii", 16), "syn_ap10k": ("ap10k", 17)}


def model_config(ffn: str = "shared") -> dict:
    return {
        "backbone": {
            "name": "vit_tiny",
            "img_size": [64, 48],
            "ffn": ffn,
            "drop_path_rate": 0.0,
            "overrides": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        },
        "head": {"type": "classic", "deconv_filters": [16, 16]},
        "heads": {n: {"skeleton": s, "num_keypoints": k} for n, (s, k) in HEADS.items()},
    }


def make_batch(owner: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = len(owner)
    weight = (torch.rand(b, 17, generator=g) > 0.2).float()
    weight[torch.tensor(owner) == 1, 16:] = 0  # mpii: 16 keypoints, padding has zero weight
    return {
        "image": torch.randn(b, 3, 64, 48, generator=g),
        "dataset_idx": torch.tensor(owner),
        "heatmap": torch.rand(b, 17, 16, 12, generator=g),
        "heatmap_weight": weight,
    }


def module(seed: int = 0, ffn: str = "shared", **model) -> PoseLitModule:
    torch.manual_seed(seed)
    m = PoseLitModule(model_config(ffn), model=model)
    m.log = lambda *a, **k: None  # no trainer attached
    for p in m.model.heads.parameters():  # heatmaps of order 1 (the std-0.001 init gives ~1e-8)
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.3)
    return m.train()


def loss_and_grads(m: PoseLitModule, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    m.zero_grad()
    loss = m.training_step(batch, 0)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def reference_loss(m: PoseLitModule, batch) -> torch.Tensor:
    """The training loss as it was computed before heads could run on every sample."""
    feats = m.model(batch["image"], batch["dataset_idx"])
    total = feats.new_zeros(())
    for d, name in enumerate(m.dataset_names):
        sel = (batch["dataset_idx"] == d).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        k = m.num_keypoints[d]
        pred = m.model.heads[name](feats[sel])
        loss = keypoint_mse(pred, batch["heatmap"][sel, :k], batch["heatmap_weight"][sel, :k])
        total = total + sel.numel() / batch["image"].shape[0] * loss
    return total


@pytest.mark.parametrize(
    "owner", [[0, 1, 0, 1, 1, 0], [0, 0, 1, 1, 0, 1]]
)  # ap10k has no sample: absent head
def test_all_heads_give_the_same_supervised_loss_and_gradients_as_own(owner):
    batch = make_batch(owner)
    own = module(heads_on="own")
    all_ = copy.deepcopy(own)
    all_.heads_on = "all"
    loss_own, grads_own = loss_and_grads(own, batch)
    loss_all, grads_all = loss_and_grads(all_, batch)
    assert torch.allclose(loss_own, loss_all, atol=1e-6, rtol=0)
    assert loss_own.item() == pytest.approx(reference_loss(copy.deepcopy(own), batch).item(), abs=1e-6)
    assert grads_own.keys() == grads_all.keys() and len(grads_own) == len(list(own.parameters()))
    for name, g in grads_own.items():
        assert torch.allclose(g, grads_all[name], atol=1e-6, rtol=0), name
    # BatchNorm running statistics are updated once, by the own samples, in both modes
    for (name, a), (_, b) in zip(own.model.heads.named_buffers(), all_.model.heads.named_buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_all_heads_returns_every_head_on_every_sample_with_the_owner_mask():
    batch = make_batch([0, 1, 0, 1, 2, 0])
    m = module(heads_on="all")
    out = m.head_outputs(batch["image"], batch["dataset_idx"])
    assert out.all is not None and set(out.all) == set(HEADS)
    for d, (name, (_, k)) in enumerate(HEADS.items()):
        assert out.all[name].shape == (6, k, 16, 12)
        mask = out.mask(d)
        assert torch.equal(out.all[name][mask], out.owned[name])
    assert m.model.head_outputs(batch["image"], batch["dataset_idx"], "own", "own").all is None


def test_cross_predictions_are_normalised_with_the_own_samples_statistics():
    batch = make_batch([0, 1, 0, 1, 1, 0])
    m = module(heads_on="all")
    head = copy.deepcopy(m.model.heads["syn_coco"])
    out = m.head_outputs(batch["image"], batch["dataset_idx"])
    with torch.no_grad():
        feats = m.model(batch["image"], batch["dataset_idx"])
        own, other = feats[batch["dataset_idx"] == 0], feats[batch["dataset_idx"] != 0]
        x = head.deconv_layers[0](own)
        stats = [(x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))]
        x = head.deconv_layers[3](head.deconv_layers[2](head.deconv_layers[1](x)))  # train mode: batch stats
        stats.append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)))
        for bn, (mean, var) in zip((head.deconv_layers[1], head.deconv_layers[4]), stats):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        expected = head.eval()(other)
    assert torch.allclose(out.all["syn_coco"][batch["dataset_idx"] != 0], expected, atol=1e-5)


def test_head_bn_batch_uses_the_statistics_of_the_full_batch():
    batch = make_batch([0, 1, 0, 1, 1, 0])
    m = module(head_bn="batch")
    head = copy.deepcopy(m.model.heads["syn_coco"])
    out = m.head_outputs(batch["image"], batch["dataset_idx"])
    with torch.no_grad():
        feats = m.model(batch["image"], batch["dataset_idx"])
        full = head(feats)  # train mode: statistics of all 6 samples
        alone = copy.deepcopy(m.model.heads["syn_coco"])
    sel = batch["dataset_idx"] == 0
    assert torch.allclose(out.owned["syn_coco"], full[sel], atol=1e-6)
    # the running statistics moved toward the full batch's mean, not the own samples'
    bn, ref = m.model.heads["syn_coco"].deconv_layers[1], head.deconv_layers[1]
    assert torch.allclose(bn.running_mean, ref.running_mean, atol=1e-7)
    x_full = head.deconv_layers[0](feats).mean((0, 2, 3))
    assert torch.allclose(bn.running_mean, 0.1 * x_full, atol=1e-6)
    with torch.no_grad():
        own_stats = alone(feats[sel])  # statistics of the 3 own samples only: a different prediction
    assert not torch.allclose(own_stats, full[sel], atol=1e-4)
    # every head ran on the batch (ap10k has no sample but its BatchNorm saw the batch)
    assert int(m.model.heads["syn_ap10k"].deconv_layers[1].num_batches_tracked) == 1


def test_heads_on_switches_to_all_when_a_cross_head_loss_weight_is_positive():
    assert not cross_head_losses_active({"heatmap": 1.0})
    assert not cross_head_losses_active({"acae": {"consistency": 0.0, "aegt": 0}})
    assert cross_head_losses_active({"posebh": {"alpha": 0.5}})
    assert resolve_heads_on("own", {"acae": {"consistency": 0.1}}) == "all"
    assert resolve_heads_on("own", {"heatmap": 1.0}) == "own"
    with pytest.raises(ValueError, match="heads_on"):
        resolve_heads_on("some", {})
    with pytest.raises(ValueError, match="head_bn"):
        PoseLitModule(model_config(), model={"head_bn": "sync"})
    with pytest.raises(ValueError, match="sync_bn=true needs model.head_bn=batch"):
        PoseLitModule(model_config(), model={"sync_bn": True})


def test_frozen_backbone_runs_without_gradients_and_heads_still_train():
    batch = make_batch([0, 1, 0, 1, 1, 0])
    m = module()
    m.model.frozen_parts = frozenset({"backbone", "heads.syn_mpii"})
    loss, grads = loss_and_grads(m, batch)
    assert loss.requires_grad is False and loss > 0
    bb = [n for n in grads if n.startswith("model.backbone.")]
    assert bb and all(grads[n].abs().max() == 0 for n in bb)  # zero (anchored for DDP), not missing
    assert all(grads[n].abs().max() == 0 for n in grads if n.startswith("model.heads.syn_mpii."))
    assert grads["model.heads.syn_coco.final_layer.weight"].abs().max() > 0


def test_losses_on_switches_the_heatmap_loss_off():
    batch = make_batch([0, 1, 0, 1, 1, 0])
    m = module()
    m.losses_on = frozenset({"acae"})
    assert m.training_step(batch, 0).item() == 0.0


def test_losses_on_per_dataset_keeps_only_that_datasets_heatmap_loss():
    """MDPN two-step, step 1: ``losses_on: [heatmap.<target>]`` trains on the target's samples only."""
    batch = make_batch([0, 1, 0, 1, 1, 0])
    m = module()
    full, _, weights = m.supervised_loss(batch)
    target = m.dataset_names[0]
    m.losses_on = frozenset({f"heatmap.{target}"})
    only, _, only_weights = m.supervised_loss(batch)
    assert set(only_weights) == {target} and set(weights) == set(m.dataset_names[:2])
    assert 0 < only.item() < full.item()
    m.zero_grad()
    m.training_step(batch, 0).backward()
    other = m.dataset_names[1]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.model.heads[other].parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in m.model.heads[target].parameters())


def test_moe_cross_predictions_use_the_samples_expert_and_prediction_the_heads_expert():
    from multipose.inference import MixSpec, Predictor

    batch = make_batch([0, 1, 2, 1, 0, 2])
    m = module(ffn="ps", heads_on="all")
    for blk in m.model.backbone.blocks:  # experts differ (they start identical / zero)
        for p in blk.mlp.experts.parameters():
            torch.nn.init.normal_(p, std=0.2)
    m.eval()  # deterministic BatchNorm, so the two expert choices can be compared exactly
    images, didx = batch["image"], batch["dataset_idx"]
    with torch.no_grad():
        out = m.model.head_outputs(images, didx, "all", "own")
        head = m.model.heads["syn_mpii"]
        sample_expert = head(m.model.backbone(images, didx))
        own_expert = head(m.model.backbone(images, torch.full_like(didx, 1)))
        spec = MixSpec.from_model_config(m.model_config)
        predicted = Predictor(m.model, spec, flip_test=False).heatmaps(images, ["syn_mpii"])["syn_mpii"]
        merged = m.model.merge_experts("syn_mpii").eval().predict_heatmaps(images)
    assert torch.allclose(out.all["syn_mpii"], sample_expert, atol=1e-6)
    assert not torch.allclose(sample_expert[didx != 1], own_expert[didx != 1], atol=1e-3)
    assert torch.allclose(predicted, own_expert, atol=1e-6)
    assert torch.allclose(merged, own_expert, atol=1e-4)


def test_sync_bn_converts_the_heads_only_under_ddp():
    m = PoseLitModule(model_config(), model={"head_bn": "batch", "sync_bn": True})

    class Trainer:
        world_size = 2
        strategy = SimpleNamespace(root_device=torch.device("cuda"))

    m._trainer = Trainer()  # what Lightning sets before setup()
    try:
        m.setup("fit")
    finally:
        m._trainer = None
    assert any(isinstance(x, torch.nn.SyncBatchNorm) for x in m.model.heads.modules())
    assert not any(isinstance(x, torch.nn.SyncBatchNorm) for x in m.model.backbone.modules())
    Trainer.strategy = SimpleNamespace(root_device=torch.device("cpu"))
    cpu = PoseLitModule(model_config(), model={"head_bn": "batch", "sync_bn": True})
    cpu._trainer = Trainer()
    with pytest.raises(ValueError, match="needs GPUs"):
        cpu.setup("fit")
    cpu._trainer = None
