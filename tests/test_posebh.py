"""PoseBH inside the module: prototype maths (|cos|, Sinkhorn, EMA), the losses' indexing (intended and released),
CSS pseudo-labels, the stage schedule of ``conf/bridge/posebh.yaml`` and the bridge in a training step."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import compose
from multipose.bridges.posebh import PAPER_WEIGHTS
from multipose.bridges.posebh.css import match_distance, pseudo_labels, pseudo_targets
from multipose.bridges.posebh.losses import contrastive, prototype_logits, sample_pixels
from multipose.bridges.posebh.prototypes import (
    aggregate,
    ema_update,
    init_prototypes,
    keypoint_maps,
    similarity_maps,
    sinkhorn,
)
from multipose.data.codecs import UDPHeatmap
from multipose.lit_module import PoseLitModule
from test_lit_module import make_batch, model_config

SMALL = {"deconv_filters": [16, 16], "dim": 8}


# ------------------------------------------------------------------------------------------------ prototype maths


def test_sinkhorn_marginals_with_many_iterations():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 9)
    scores = torch.rand(len(labels), 3, generator=g)
    plan = sinkhorn(scores, labels, 3, kappa=0.05, iterations=500)
    assert torch.allclose(plan.sum(1), torch.ones(len(labels)), atol=1e-5)  # one unit per pixel
    for k, n_k in enumerate([7, 5, 9]):
        cols = plan[labels == k].sum(0)  # every prototype of the class gets n_k / M
        assert torch.allclose(cols, torch.full((3,), n_k / 3), atol=1e-3), (k, cols)


def test_sinkhorn_balanced_known_answer():
    """Two pixels, two prototypes, symmetric scores: the doubly stochastic plan is [[p, 1-p], [1-p, p]] with
    p = softmax(a / kappa, b / kappa)[0], already after one iteration."""
    a, b, kappa = 0.9, 0.6, 0.05
    plan = sinkhorn(torch.tensor([[a, b], [b, a]]), torch.tensor([0, 0]), 1, kappa=kappa, iterations=3)
    p = 1.0 / (1.0 + math.exp((b - a) / kappa))
    assert torch.allclose(plan, torch.tensor([[p, 1 - p], [1 - p, p]]), atol=1e-6)


def test_similarity_is_absolute_cosine_and_sign_invariant():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(2, 8, 4, 3, generator=g)
    protos = init_prototypes(5, 3, 8)
    sim = similarity_maps(emb, protos)
    assert sim.shape == (2, 5, 3, 4, 3) and sim.dtype == torch.float32
    manual = F.cosine_similarity(emb[1, :, 2, 1][None], protos[4, 2][None]).abs()
    assert sim[1, 4, 2, 2, 1] == pytest.approx(float(manual), abs=1e-6)
    assert torch.allclose(similarity_maps(-emb, protos), sim)
    assert torch.allclose(similarity_maps(emb, -protos), sim)
    maps = keypoint_maps(sim)
    assert maps.shape == (2, 5, 4, 3) and float(maps.max()) <= 1 - 1e-4 and float(maps.min()) >= 1e-4
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 even under autocast
        assert similarity_maps(emb, protos).dtype == torch.float32


def test_ema_update_formula_and_untouched_rows():
    protos = init_prototypes(3, 2, 4, generator=torch.Generator().manual_seed(2))
    v = torch.zeros(3, 2, 4)
    n = torch.zeros(3, 2)
    v[1, 0] = torch.tensor([2.0, 0.0, 0.0, 0.0])
    n[1, 0] = 0.7
    new = ema_update(protos, v, n, momentum=0.9)
    expect = F.normalize(0.9 * protos[1, 0] + 0.1 * torch.tensor([1.0, 0, 0, 0]), dim=0)
    assert torch.allclose(new[1, 0], expect, atol=1e-6)
    mask = torch.ones(3, 2, dtype=torch.bool)
    mask[1, 0] = False
    assert torch.allclose(new[mask], protos[mask], atol=1e-6)


def test_aggregate_weights_the_feature_by_the_squared_weight():
    pixels = F.normalize(torch.randn(3, 4), dim=1)
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([0.5, 1.0, 0.2])
    v, n = aggregate(pixels, torch.tensor([2, 2, 0]), q, w, 3)
    assert torch.allclose(v[2, 0], 0.25 * pixels[0] + pixels[1], atol=1e-6)
    assert torch.allclose(v[0, 1], 0.04 * pixels[2], atol=1e-6)
    assert n[2, 0] == pytest.approx(1.5) and n[0, 1] == pytest.approx(0.2) and n[1].sum() == 0


# ------------------------------------------------------------------------------------------------ losses: indexing


def _distinct_prototypes(j: int, m: int, f: int) -> torch.Tensor:
    return F.normalize(torch.randn(j, m, f, generator=torch.Generator().manual_seed(3)), dim=-1)


def test_ppc_logits_use_the_datasets_own_rows_and_faithful_reproduces_the_released_columns():
    protos = _distinct_prototypes(10, 3, 6)  # dataset A: rows 0-3, dataset B (offset 4): rows 4-9
    pixels = F.normalize(torch.randn(5, 6), dim=1)
    intended = prototype_logits(pixels, protos, offset=4, k=6)
    own = (pixels @ protos[4:10].reshape(18, 6).t()).abs()
    assert torch.allclose(intended, own, atol=1e-6)
    released = prototype_logits(pixels, protos, offset=4, k=6, faithful=True)
    flat = protos.reshape(30, 6)
    assert torch.allclose(released, (pixels @ flat[4:22].t()).abs(), atol=1e-6)  # columns offset + e
    assert not torch.allclose(released, intended)
    # the first dataset (offset 0) is the same both ways
    assert torch.allclose(
        prototype_logits(pixels, protos, 0, 4), prototype_logits(pixels, protos, 0, 4, True)
    )


def test_contrastive_targets_and_ema_rows_follow_the_offset():
    """Pixels that equal prototype (offset + k, m) get Sinkhorn target m (intended) and update row offset + k; the
    released indexing reads row k for Sinkhorn and counts a pixel correct only if its nearest keypoint is k."""
    protos = _distinct_prototypes(10, 3, 6)
    offset, k = 4, 6
    labels = torch.tensor([0, 0, 0, 2, 2, 2, 5, 5, 5])  # one pixel on each prototype of three keypoints
    ms = torch.tensor([1, 0, 2] * 3)
    pixels = protos[offset + labels, ms].clone()
    nearest = offset + labels
    res = contrastive(
        pixels, labels, torch.ones(9), protos, offset, k, ema=True, nearest=nearest, gumbel=False
    )
    rows_updated = set(map(tuple, (res.n > 0).nonzero().tolist()))
    assert rows_updated == {(offset + int(c), int(m)) for c, m in zip(labels, ms)}
    # PPD: the target logit is |cos| of a pixel with itself = 1
    assert float(res.ppd) == pytest.approx(0.0, abs=1e-10)
    faithful = contrastive(
        pixels, labels, torch.ones(9), protos, offset, k, faithful=True, ema=True, nearest=nearest
    )
    assert (
        float(faithful.n.sum()) == 0.0
    )  # the released mask compares with the local index: nothing is correct


def test_sample_pixels_takes_every_pixel_inside_a_window_labelled_by_argmax():
    t = torch.zeros(1, 2, 5, 5)
    t[0, 0, 1, 1], t[0, 0, 2, 2], t[0, 1, 2, 2], t[0, 1, 4, 4] = 0.5, 0.3, 0.6, 0.1
    s = sample_pixels(t)
    got = {(int(y), int(x)): (int(c), float(u)) for y, x, c, u in zip(s.y, s.x, s.label, s.conf)}
    assert got == {(1, 1): (0, 0.5), (2, 2): (1, pytest.approx(0.6)), (4, 4): (1, pytest.approx(0.1))}


# ------------------------------------------------------------------------------------------------ CSS


def _peak_map(h, w, xy, value):
    codec = UDPHeatmap((h, w), (h, w))
    hm, _ = codec.encode(np.array([[xy[0], xy[1], 1.0]]))
    return torch.as_tensor(hm[0] * value)


def test_css_fused_point_and_mismatch_weight_zero():
    h, w = 32, 24
    a, b = (10.3, 12.6), (11.1, 13.4)
    reg = torch.stack([_peak_map(h, w, a, 0.8), _peak_map(h, w, (3.0, 3.0), 0.9)])[None]
    proto = torch.stack([_peak_map(h, w, b, 0.5), _peak_map(h, w, (20.0, 25.0), 0.9)])[None]
    coords, weight = pseudo_labels(reg, proto, confidence=0.25, distance=match_distance(2.1, (h, w)))
    codec = UDPHeatmap((h, w), (h, w))
    (ca, sa), (cb, sb) = codec.decode(reg), codec.decode(proto)
    expect = (sa[0, 0] * ca[0, 0] + sb[0, 0] * cb[0, 0]) / (sa[0, 0] + sb[0, 0])
    np.testing.assert_allclose(coords[0, 0], expect, atol=1e-5)
    assert np.linalg.norm(coords[0, 0] - (0.8 * np.array(a) + 0.5 * np.array(b)) / 1.3) < 0.2
    assert weight[0, 0] == pytest.approx(min(sa[0, 0], sb[0, 0]))
    assert weight[0, 1] == 0.0  # peaks ~23 px apart: no pseudo-label
    # the released fusion adds the prototype branch's confidence instead of its coordinates
    f_coords, _ = pseudo_labels(reg, proto, 0.25, 5.0, faithful=True)  # (its own match test: sqrt(1 + 4))
    np.testing.assert_allclose(
        f_coords[0, 0], (sa[0, 0] * ca[0, 0] + sb[0, 0] * sb[0, 0]) / (sa[0, 0] + sb[0, 0]), atol=1e-5
    )
    # a confident but low peak on one side: no pseudo-label
    _, low = pseudo_labels(reg * 0.25, proto, 0.25, 2.1)
    assert low[0, 0] == 0.0
    maps, tw = pseudo_targets(coords, weight, codec)
    assert maps.shape == (1, 2, h, w) and tw[0, 1] == 0 and tw[0, 0] == weight[0, 0]
    assert np.unravel_index(maps[0, 0].argmax(), (h, w)) == (round(coords[0, 0, 1]), round(coords[0, 0, 0]))


def test_css_match_distance_scales_with_the_heatmap_and_faithful_uses_the_released_test():
    assert match_distance(2.1, (64, 48)) == pytest.approx(2.1)
    assert match_distance(2.1, (32, 24)) == pytest.approx(1.05)
    h, w = 32, 24
    reg = _peak_map(h, w, (5.0, 20.0), 0.9)[None, None]
    proto = _peak_map(h, w, (5.0, 20.0), 0.9)[None, None]  # same point: intended match
    assert pseudo_labels(reg, proto, 0.25, 2.1)[1][0, 0] > 0
    # released: sqrt((ax-bx)^2 + (bx-by)^2) = |5 - 20| > 2.1 -> no match for the same point
    assert pseudo_labels(reg, proto, 0.25, 2.1, faithful=True)[1][0, 0] == 0


# ------------------------------------------------------------------------------------------------ the bridge


def _lit(**bridge):
    torch.manual_seed(0)
    lit = PoseLitModule(
        model_config(), loss={"posebh": dict(PAPER_WEIGHTS)}, bridge={"posebh": {**SMALL, **bridge}}
    )
    lit.logged = {}
    lit.log = lambda key, value, **k: lit.logged.__setitem__(key, float(value))
    return lit.train()


def _gaussian_batch(owner, seed=0):
    batch = make_batch(owner, seed)
    codec = UDPHeatmap((64, 48), (16, 12))
    rng = np.random.default_rng(seed)
    maps = np.zeros((len(owner), 17, 16, 12), np.float32)
    for i in range(len(owner)):
        kpts = np.concatenate([rng.uniform(4, 44, (17, 1)), rng.uniform(4, 60, (17, 1)), np.ones((17, 1))], 1)
        maps[i] = codec.encode(kpts)[0]
    batch["heatmap"] = torch.as_tensor(maps) * batch["heatmap_weight"][..., None, None]
    return batch


def test_bridge_layout_uses_the_unified_keypoint_axis():
    lit = _lit()
    bridge = lit.bridges["posebh"]
    assert bridge.prototypes.shape == (17 + 16 + 17, 3, 8)
    assert bridge.offsets == [0, 17, 33] and bridge.rows("syn_mpii") == slice(17, 33)
    assert "prototypes" in dict(bridge.named_buffers()) and not list(
        n for n, _ in bridge.named_parameters() if "prototypes" in n
    )
    with pytest.raises(ValueError, match="bridge.posebh has unknown keys"):
        PoseLitModule(model_config(), loss={"posebh": {}}, bridge={"posebh": {"gama": 1}})
    with pytest.raises(ValueError, match="figure_projection must be one of"):
        PoseLitModule(model_config(), loss={"posebh": {}}, bridge={"posebh": {"figure_projection": "umap"}})
    with pytest.raises(ValueError, match="loss.posebh has unknown keys"):
        PoseLitModule(model_config(), loss={"posebh": {"momentum": 0.9}}, bridge={"posebh": {}})


def test_training_step_prototypes_get_no_gradient_and_follow_the_ema_unless_frozen():
    lit = _lit()
    bridge = lit.bridges["posebh"]
    batch = _gaussian_batch([0, 1, 2, 0, 1])
    before = bridge.prototypes.clone()
    loss = lit.training_step(batch, 0)
    assert {"train/posebh/phm", "train/posebh/ppc", "train/posebh/ppd", "train/posebh/css"} <= set(lit.logged)
    assert (
        0 < lit.logged["train/posebh/proto_usage"] <= 1
        and 0 <= lit.logged["train/posebh/sinkhorn_entropy"] <= 1
    )
    loss.backward()
    assert bridge.prototypes.grad is None and not bridge.prototypes.requires_grad
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in bridge.embed.parameters())
    assert torch.equal(bridge.prototypes, before)  # the step's logits used the prototypes before the update
    lit.on_train_batch_end(None, batch, 0)
    moved = (bridge.prototypes - before).norm(dim=-1)
    assert moved.max() > 0 and moved.max() < 0.01  # momentum 0.999
    assert torch.allclose(bridge.prototypes.norm(dim=-1), torch.ones(moved.shape), atol=1e-5)
    lit.model.frozen_parts = frozenset({"bridges.posebh.prototypes"})
    frozen = bridge.prototypes.clone()
    lit.training_step(batch, 1)
    lit.on_train_batch_end(None, batch, 1)
    assert torch.equal(bridge.prototypes, frozen)


def test_loss_terms_scale_with_their_weights_and_stage_gating():
    batch = _gaussian_batch([0, 1, 2, 2])
    terms = {}
    for scale in (1.0, 10.0):
        lit = _lit()
        lit.bridges["posebh"].w = {k: v * scale for k, v in PAPER_WEIGHTS.items()}
        torch.manual_seed(5)
        out = lit.bridges["posebh"].training_losses(
            lit, batch, lit.head_outputs(batch["image"], batch["dataset_idx"])
        )
        terms[scale] = {k: float(v.detach()) for k, v in out.items()}
    for k in ("phm", "ppc", "ppd"):
        assert terms[10.0][k] == pytest.approx(10 * terms[1.0][k], rel=1e-4), k
    lit = _lit()
    lit.losses_on = frozenset({"heatmap", "posebh.phm"})
    out = lit.bridges["posebh"].training_losses(
        lit, batch, lit.head_outputs(batch["image"], batch["dataset_idx"])
    )
    assert set(out) == {"phm"}


def test_css_term_reaches_both_branches_only_where_they_agree_and_counts_its_candidates():
    """Image 1 (syn_mpii) carries the syn_coco skeleton's keypoint 3 on both branches at the same peak (a pseudo-label),
    keypoint 4 confident on both but 10 px apart (none); the gradient of the CSS term reaches exactly that
    keypoint's head and prototype maps, and the counts say how many candidates passed each test."""
    lit = _lit()
    bridge = lit.bridges["posebh"]
    batch = _gaussian_batch([0, 1, 2, 0])
    outputs = lit.head_outputs(batch["image"], batch["dataset_idx"])
    b, (h, w) = 4, outputs.all["syn_coco"].shape[-2:]
    reg = {n: torch.full_like(outputs.all[n], 0.1) for n in bridge.datasets}
    maps = torch.full((b, bridge.prototypes.shape[0], h, w), 0.1)
    reg["syn_coco"][1, 3] += _peak_map(h, w, (5.0, 6.0), 0.8)
    maps[1, 3] += _peak_map(h, w, (5.0, 6.0), 0.7)
    reg["syn_coco"][1, 4] += _peak_map(h, w, (1.0, 1.0), 0.8)
    maps[1, 4] += _peak_map(h, w, (9.0, 14.0), 0.7)
    reg = {n: r.requires_grad_() for n, r in reg.items()}
    maps.requires_grad_()
    emb = bridge.prototype_maps(outputs.features)[1]
    counts = {}
    css = bridge._css_loss(batch, SimpleNamespace(owner=outputs.owner, all=reg), maps, emb, counts)
    others = {n: int((outputs.owner != d).sum()) for d, n in enumerate(bridge.datasets)}
    assert counts == {
        "candidates": sum(others[n] * k for n, k in zip(bridge.datasets, bridge.sizes)),
        "confident": 2,
        "kept": 1,
    }
    assert float(css.detach()) > 0
    css.backward()
    head_grad = reg["syn_coco"].grad.abs().sum((2, 3))
    assert head_grad[1, 3] > 0 and head_grad.sum() == head_grad[1, 3]  # the matched keypoint only
    assert all(reg[n].grad is None for n in bridge.datasets[1:])  # no pseudo-label: not in the graph
    proto_grad = maps.grad.abs().sum((2, 3))
    assert proto_grad[1, 3] > 0 and proto_grad.sum() == proto_grad[1, 3]


def test_css_term_trains_the_heads_in_a_training_step_and_logs_its_shares():
    """With prototype maps that agree with the heads everywhere and no confidence floor, every candidate gets a
    pseudo-label: the logged shares are 1 and the CSS term alone gives the heads a gradient (no detach on the way)."""
    lit = _lit(css={"confidence": -1.0})
    bridge = lit.bridges["posebh"]
    batch = _gaussian_batch([0, 1, 2, 0])
    outputs = lit.head_outputs(batch["image"], batch["dataset_idx"])
    real = bridge.prototype_maps

    def agreeing(features):
        emb = real(features)[1]
        return torch.cat([outputs.all[n].detach() for n in bridge.datasets], dim=1), emb

    bridge.prototype_maps = agreeing
    out = bridge.training_losses(lit, batch, outputs)
    assert lit.logged["train/posebh/css_confident"] == 1.0 and lit.logged["train/posebh/css_kept"] == 1.0
    lit.zero_grad(set_to_none=True)
    out["css"].backward()
    for name, head in lit.model.heads.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters()), name


def _stage_callback(max_epochs: int, *extra: str):
    from multipose.training import build_stage_callback

    cfg = compose(
        "train", ["+experiment=smoke", "+bridge=posebh", f"trainer.max_epochs={max_epochs}", *extra]
    )
    return build_stage_callback(cfg)


def test_posebh_stages_scale_with_the_run_and_follow_the_epoch_after_resume():
    cb = _stage_callback(10)
    stages = cb.resolve(10)
    assert [s.start_epoch for s in stages] == [0, 5, 10]  # css at half the run; backbone never (= max_epochs)
    assert [
        s.start_epoch for s in _stage_callback(100, "bridge.posebh.schedule.backbone_thaw=0.9").resolve(100)
    ] == [
        0,
        50,
        90,
    ]
    lit = _lit()
    bridge = lit.bridges["posebh"]
    for epoch, frozen_protos, css in [(0, False, False), (4, False, False), (5, True, True), (9, True, True)]:
        fresh = _stage_callback(
            10
        )  # a resumed run starts with a new callback: the stage is a function of the epoch
        trainer = SimpleNamespace(max_epochs=10, current_epoch=epoch, is_global_zero=True)
        fresh.apply(trainer, lit)
        assert bridge.prototypes_frozen(lit) is frozen_protos, epoch
        assert lit.loss_on("posebh", "css") is css, epoch
        assert lit.model.is_frozen("heads") is (epoch < 5)
        assert lit.model.is_frozen("backbone")


def test_stage_bridge_parts_are_checked():
    from multipose.training.stages import check_bridge_parts

    lit = _lit()
    check_bridge_parts(lit, ["bridges.posebh.prototypes", "bridges.posebh.embed"], "stage.stages[1].frozen")
    with pytest.raises(
        ValueError, match=r"stage.stages\[1\].frozen: unknown bridge part.*bridges.posebh.protos"
    ):
        check_bridge_parts(lit, ["bridges.posebh.protos"], "stage.stages[1].frozen")


# ------------------------------------------------------------------------------------------------ config


def test_bridge_config_composes_at_the_paper_values_and_needs_the_bridge():
    from multipose.config_validation import ConfigError, validate_train_config

    cfg = compose("train", ["+bridge=posebh"])
    assert dict(cfg.loss.posebh) == PAPER_WEIGHTS
    assert cfg.bridge.posebh.momentum == 0.999 and cfg.bridge.posebh.kappa == 0.05
    bare = compose("train", ["+loss.posebh.alpha=1e-3"])
    with pytest.raises(ConfigError, match=r"\+bridge=posebh"):
        validate_train_config(bare, check_files=False)
    sweep = compose("train", ["+bridge=posebh", "loss.posebh.alpha=3.33e-5"])
    assert sweep.loss.posebh.alpha == pytest.approx(3.33e-5) and sweep.loss.posebh.beta == pytest.approx(
        1.25e-7
    )


def test_full_mix_with_posebh_composes_validates_and_has_214_prototype_rows():
    from multipose.config_validation import validate_train_config
    from multipose.skeletons import unified_layout

    cfg = compose("train", ["+experiment=full_mix", "+bridge=posebh", "trainer.devices=4"])
    validate_train_config(cfg, check_files=False)
    layout = unified_layout({n: str(e.skeleton) for n, e in cfg.data.datasets.items()})
    assert layout.total == 214 and list(layout.offsets.values()) == [0, 17, 31, 47, 64, 81]
    demo = compose("train", ["+experiment=posebh_demo", "init_from=x.ckpt"])
    assert demo.bridge.posebh.deconv_filters == [64, 64] and dict(demo.loss.posebh) == PAPER_WEIGHTS


def test_fast_dev_run_with_posebh_logs_the_terms_and_the_proto_variant(tmp_path, tiny_world):
    import json

    from multipose.train import train
    from train_helpers import run_config

    cfg = run_config(
        tmp_path,
        tiny_world,
        [
            "+experiment=smoke",
            "+bridge=posebh",
            "bridge.posebh.deconv_filters=[16,16]",
            "+trainer.fast_dev_run=true",
        ],
    )
    train(cfg)
    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())
    assert {"train/posebh/phm", "train/posebh/ppc", "train/posebh/css"} <= set(metrics)
    assert "val/syn_coco/proto/AP" in metrics and "val/syn_mpii/proto/PCKh@0.5" in metrics


def test_figures_for_the_dashboards():
    lit = _lit().eval()
    batch = _gaussian_batch([0, 1, 2])
    figs = lit.bridges["posebh"].figures(lit, batch, crops=2)
    assert set(figs) == {"posebh/similarity", "posebh/prototypes"}
    sim, protos_img = figs["posebh/similarity"], figs["posebh/prototypes"]
    assert sim.dtype == np.uint8 and sim.shape == (
        2 * 96,
        5 * 72,
        3,
    )  # 2 crops x (crop + 4 maps), 64x48 aspect
    assert protos_img.shape == (480, 480, 3) and (protos_img != 255).any()
    protos, tags, owners = lit.bridges["posebh"].prototype_table()
    assert protos.shape == (50 * 3, 8) and len(tags) == len(owners) == 150 and tags[0] == tags[2]


def test_cps_clusters_recover_separated_groups_and_rank_prototypes_per_cluster():
    from multipose.bridges.posebh.cps import fit_clusters

    g = torch.Generator().manual_seed(4)
    dirs = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    group = torch.arange(8) % 4  # keypoint j sits near direction j % 4, both of its prototypes
    protos = F.normalize(dirs[group][:, None, :] + 0.01 * torch.randn(8, 2, 16, generator=g), dim=-1)
    cps, owner = fit_clusters(protos, options=[4], iterations=100)
    assert cps.shape == (4, 2, 16) and owner.shape == (4,)
    centre_dirs = (cps.mean(1) @ dirs.t()).argmax(1)
    assert sorted(centre_dirs.tolist()) == [0, 1, 2, 3]  # one cluster per group
    assert torch.equal(group[owner], centre_dirs)  # each cluster's owner keypoint belongs to its group
    for c in range(4):  # the M members of a cluster come from the cluster's own group
        assert ((cps[c] @ dirs[centre_dirs[c]]) > 0.99).all()


def test_cps_term_is_on_only_with_frozen_prototypes_and_fits_once():
    lit = _lit(cps={"enabled": True, "clusters": [8, 16], "iterations": 20})
    bridge = lit.bridges["posebh"]
    batch = _gaussian_batch([0, 1, 2, 0])
    outputs = lit.head_outputs(batch["image"], batch["dataset_idx"])
    assert "cps" not in bridge.training_losses(lit, batch, outputs) and int(bridge.cps_count) == 0
    lit.model.frozen_parts = frozenset({"bridges.posebh.prototypes"})
    out = bridge.training_losses(lit, batch, outputs)
    assert int(bridge.cps_count) in (8, 16) and float(out["cps"].detach()) > 0
    first = bridge.cps_prototypes.clone()
    bridge.training_losses(lit, batch, outputs)
    assert torch.equal(bridge.cps_prototypes, first)  # fitted once
    assert {"bridges.posebh.cps_prototypes", "bridges.posebh.cps_count"} <= set(lit.state_dict())


@pytest.mark.slow
def test_both_bridges_train_together_in_one_module(tmp_path, tiny_world):
    """``+bridge=[acae,posebh]``: both methods' terms and variants in one run of the one LightningModule."""
    import json

    from multipose.train import train
    from train_helpers import run_config

    cfg = run_config(
        tmp_path,
        tiny_world,
        [
            "+experiment=smoke",
            "+bridge=[acae,posebh]",
            "bridge.posebh.deconv_filters=[16,16]",
            "bridge.acae.fit_pool=64",
            "bridge.acae.fit_steps=100",
        ],
    )
    train(cfg)
    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())
    assert {"train/acae/consistency", "train/posebh/phm", "train/posebh/css"} <= set(metrics)
    assert "val/syn_coco/acae/AP" in metrics and "val/syn_coco/proto/AP" in metrics
    assert all(v == v for k, v in metrics.items() if k.startswith("train/"))  # no NaN loss term
