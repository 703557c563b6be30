"""ACAE inside training and evaluation: differentiable coordinates, the consistency and AE-to-GT terms, the AE in
the checkpoint, exact resume of the fine-tune, the projected validation variant and label-free metrics, AE files
checked against the mix, the Predictor / predict --project, and the configs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import compose
from multipose.bridges.acae import ACAEBridge, consistency_residual, union_points
from multipose.bridges.acae_metrics import bias_corrected_chd, cross_head_predictability, sum_to_one_lstsq
from multipose.bridges.acae_model import AEFileError, AffineCombiningAE, save_ae
from multipose.data.codecs import build_codec
from multipose.losses.coords import heatmap_coords, soft_argmax
from train_helpers import load_state, probe_overrides, run_config, run_train_cli, stop_after_overrides

SMOKE = ["+experiment=smoke", "trainer.enable_model_summary=false"]
CKPT = ["callbacks=default", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]
ACAE = ["+bridge=acae", "+stage=acae_finetune", "bridge.acae.n_latent=8"]
SMOKE_HEADS = {"syn_coco": ("coco", 17), "syn_mpii": ("mpii", 16)}


def _model_config(heads=SMOKE_HEADS) -> dict:
    return {"heads": {n: {"skeleton": s, "num_keypoints": k} for n, (s, k) in heads.items()}}


def _mix(heads=SMOKE_HEADS, codec="udp") -> dict:
    return {
        "input_size": [64, 48],
        "heatmap_size": [16, 12],
        "sigma": 2.0,
        "datasets": {n: {"skeleton": s, "codec": codec, "metric": "coco"} for n, (s, _) in heads.items()},
    }


def _bridge(**settings) -> ACAEBridge:
    return ACAEBridge({"n_latent": 8, **settings}, {"consistency": 1.0, "aegt": 1.0}, _model_config(), _mix())


# ------------------------------------------------------------------------------------------------ coordinates
@pytest.mark.parametrize("codec_name", ["udp", "msra"])
def test_soft_argmax_gives_the_encoded_point_in_input_pixels(codec_name):
    codec = build_codec(codec_name, (128, 96), (32, 24), sigma=2.0)
    rng = np.random.default_rng(0)
    kpts = np.concatenate([rng.uniform([12, 12], [84, 116], size=(20, 2)), np.ones((20, 1))], axis=1)
    heatmaps, _ = codec.encode(kpts)
    xy, peak = heatmap_coords(torch.from_numpy(heatmaps), codec.stride)
    err = np.abs(xy.numpy() - kpts[:, :2])
    # UDP draws the Gaussian at the sub-pixel point: the windowed soft-argmax recovers it to < 0.05 heatmap px;
    # MSRA centres it on the rounded heatmap pixel, so only that pixel (+-0.5 heatmap px) is recoverable
    tol = 0.05 if codec_name == "udp" else 0.55
    assert (err <= tol * codec.stride + 1e-4).all(), err.max(axis=0)
    assert torch.allclose(peak, torch.from_numpy(heatmaps.reshape(20, -1).max(1)))


def test_udp_and_msra_coordinates_agree_on_the_same_point():
    udp = build_codec("udp", (128, 96), (32, 24))
    msra = build_codec("msra", (128, 96), (32, 24))
    kpts = np.array([[40.3, 70.8, 1.0], [20.0, 100.2, 1.0]])
    a, _ = heatmap_coords(torch.from_numpy(udp.encode(kpts)[0]), udp.stride)
    b, _ = heatmap_coords(torch.from_numpy(msra.encode(kpts)[0]), msra.stride)
    assert (a - b).abs().max() <= 0.55 * float(msra.stride.max())  # MSRA's rounding, nothing systematic


def test_soft_argmax_is_not_biased_towards_the_argmax_pixel():
    """A Gaussian a third of a pixel off the grid: the window mean (beta -> 0) stays near the pixel, ours does not."""
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(12.0), indexing="ij")
    hm = torch.exp(-((xs - 5.33) ** 2 + (ys - 7.0) ** 2) / 8.0)
    xy, _ = soft_argmax(hm)
    assert abs(xy[0].item() - 5.33) < 0.04 and abs(xy[1].item() - 7.0) < 1e-6
    flat, _ = soft_argmax(hm, beta=1e-3)
    assert abs(flat[0].item() - 5.33) > 0.1


def test_soft_argmax_rejects_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        soft_argmax(torch.zeros(2, 4, 4), radius=-1)
    with pytest.raises(ValueError, match="beta"):
        soft_argmax(torch.zeros(2, 4, 4), beta=0)


def _peaked_heatmaps(k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(6.0), indexing="ij")
    centres = torch.rand(k, 2, generator=g) * torch.tensor([3.0, 4.0]) + 1.5
    hm = torch.exp(-((xs - centres[:, :1, None]) ** 2 + (ys - centres[:, 1:, None]) ** 2) / 8.0)
    return (hm + 0.01 * torch.rand(k, 8, 6, generator=g)).double()[None]


def test_soft_argmax_and_consistency_loss_gradcheck_float64():
    ae, index = AffineCombiningAE.for_mix({"a": "coco", "b": "mpii"}, merge="none", n_latent=8, seed=3)
    w_rec = ae.reconstruction_weights().detach()
    hm_a, hm_b = _peaked_heatmaps(17, 0).requires_grad_(), _peaked_heatmaps(16, 1).requires_grad_()
    stride = (48 - 1) / (12 - 1), (64 - 1) / (16 - 1)

    def loss(a, b):
        kp = {}
        for name, hm in (("a", a), ("b", b)):
            xy, peak = heatmap_coords(hm, stride)
            kp[name] = torch.cat([xy / 64.0, peak[..., None].to(xy)], -1)
        union, _ = union_points(ae, index, kp)
        return consistency_residual({h: p[..., :2] for h, p in kp.items()}, index, union, w_rec).abs().mean()

    few = hm_a[:, :3].detach().clone().requires_grad_()  # the full Jacobian of three heatmaps
    assert torch.autograd.gradcheck(lambda hm: heatmap_coords(hm, stride)[0], (few,), eps=1e-6, atol=1e-5)
    # the loss through every head's heatmaps: random directional derivatives (fast mode) keep this test quick
    assert torch.autograd.gradcheck(loss, (hm_a, hm_b), eps=1e-6, atol=1e-5, fast_mode=True)


# ------------------------------------------------------------------------------------------------ the loss
def _in_range_projector(j: int, latent: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_rec [J, J], dec [L, J])`` of an affine AE whose encoder is the decoder's pseudo-inverse (columns of
    both sum to 1), so every decoded pose is a fixed point: the range of a perfectly fitted AE."""
    g = torch.Generator().manual_seed(seed)
    dec = torch.rand(latent, j, generator=g, dtype=torch.float64) + 0.1
    dec = dec / dec.sum(0, keepdim=True)
    enc = torch.linalg.pinv(dec)  # dec @ enc = I, and 1^T dec = 1^T gives 1^T enc = 1^T
    assert torch.allclose(enc.sum(0), torch.ones(latent, dtype=torch.float64))
    return enc @ dec, dec


def test_consistency_is_zero_in_the_range_and_positive_off_it():
    index = {"a": torch.tensor([0, 1, 2, 3, -1]), "b": torch.tensor([4, 5, 6, 7, 8, 9])}
    w_rec, dec = _in_range_projector(10, 4, seed=0)
    z = torch.randn(3, 4, 2, dtype=torch.float64)
    union = torch.einsum("blc,lj->bjc", z, dec)  # poses in the range
    heads = {
        "a": torch.cat([union[:, :4], torch.full((3, 1, 2), 7.0, dtype=torch.float64)], 1),
        "b": union[:, 4:],
    }
    res = consistency_residual(heads, index, union, w_rec)
    assert res.shape == (3, 4 + 6, 2)  # joints outside the AE (index -1) are not counted
    assert res.abs().max() < 1e-10
    moved = union.clone()
    moved[:, 2] += 0.1
    heads["a"] = moved[:, :5]
    assert consistency_residual(heads, index, moved, w_rec).abs().mean() > 1e-3


def test_training_terms_match_the_formula_and_are_stage_gated():
    bridge = _bridge()
    bridge.fitted[:] = True
    ae, index = bridge.aes["human"], bridge.index["human"]
    g = torch.Generator().manual_seed(0)
    heat = {
        "syn_coco": torch.rand(4, 17, 16, 12, generator=g),
        "syn_mpii": torch.rand(4, 16, 16, 12, generator=g),
    }
    owner = torch.tensor([0, 1, 0, 1])
    outputs = SimpleNamespace(all=heat, owner=owner, mask=lambda i: owner == i)
    target = torch.zeros(4, 17, 16, 12)
    target[:, :, 5, 6] = 1.0  # every GT joint at heatmap pixel (6, 5)
    weight = torch.ones(4, 17)
    weight[owner == 1, 16] = 0.0
    batch = {"image": torch.zeros(4, 3, 64, 48), "heatmap": target, "heatmap_weight": weight}
    lit = SimpleNamespace(loss_on=lambda name, term: True)
    terms = bridge.training_losses(lit, batch, outputs)
    stride = torch.tensor([47 / 11, 63 / 15])
    kp = {}
    for h, hm in heat.items():
        xy, peak = heatmap_coords(hm, stride)
        kp[h] = torch.cat([xy / 64, peak[..., None]], -1)
    union, _ = union_points(ae, index, kp)
    w_rec = ae.reconstruction_weights().float()
    expect = consistency_residual({h: p[..., :2] for h, p in kp.items()}, index, union.float(), w_rec)
    assert terms["consistency"].item() == pytest.approx(expect.abs().mean().item(), rel=1e-5)
    rec = torch.einsum("bjc,jk->bkc", union.float(), w_rec)
    gt = torch.tensor([6.0, 5.0]) * stride / 64
    own = torch.cat([rec[[0, 2]][:, index["syn_coco"]], rec[[1, 3]][:, index["syn_mpii"]]], 1)
    assert terms["aegt"].item() == pytest.approx((own - gt).abs().mean().item(), rel=1e-5)
    lit_off = SimpleNamespace(loss_on=lambda name, term: term != "aegt")
    assert set(bridge.training_losses(lit_off, batch, outputs)) == {"consistency"}


LATENT_MODEL = {
    **_model_config(),
    "backbone": {"name": "vit_tiny", "overrides": {"embed_dim": 32}},
    "head": {"type": "classic", "deconv_filters": [16, 16]},
}


def test_latent_and_hybrid_train_a_latent_head_with_their_terms():
    weights = {"consistency": 1.0, "aegt": 1.0, "latent_gt": 1.0, "teacher": 1.0}
    torch.manual_seed(0)
    hybrid = ACAEBridge({"n_latent": 8, "variant": "hybrid"}, weights, LATENT_MODEL, _mix())
    hybrid.fitted[:] = True
    ae, index = hybrid.aes["human"], hybrid.index["human"]
    head = hybrid.latent_heads["human"]
    assert not any(p.requires_grad for p in ae.parameters())
    assert {id(p) for p in hybrid.extra_optimizer_params()} == {id(p) for p in head.parameters()}
    g = torch.Generator().manual_seed(1)
    heat = {
        "syn_coco": torch.rand(4, 17, 16, 12, generator=g),
        "syn_mpii": torch.rand(4, 16, 16, 12, generator=g),
    }
    owner = torch.tensor([0, 1, 0, 1])
    feats = torch.randn(4, 32, 4, 3, generator=g)
    outputs = SimpleNamespace(all=heat, owner=owner, mask=lambda i: owner == i, features=feats)
    target = torch.zeros(4, 17, 16, 12)
    target[:, :, 5, 6] = 1.0
    batch = {"image": torch.zeros(4, 3, 64, 48), "heatmap": target, "heatmap_weight": torch.ones(4, 17)}
    lit = SimpleNamespace(loss_on=lambda name, term: True, global_step=0)
    terms = hybrid.training_losses(lit, batch, outputs)
    assert set(terms) == set(weights)
    stride = torch.tensor([47 / 11, 63 / 15])
    z, _ = heatmap_coords(head(feats), stride)
    z = z / 64
    decoded = torch.einsum("bld,lj->bjd", z, ae.decoder_weights().float())
    gt = torch.tensor([6.0, 5.0]) * stride / 64
    own = torch.cat([decoded[[0, 2]][:, index["syn_coco"]], decoded[[1, 3]][:, index["syn_mpii"]]], 1)
    assert terms["latent_gt"].item() == pytest.approx((own - gt).abs().mean().item(), rel=1e-4)
    kp = {}
    for h, hm in heat.items():
        xy, peak = heatmap_coords(hm, stride)
        kp[h] = torch.cat([xy / 64, peak[..., None]], -1)
    union, _ = union_points(ae, index, kp)
    teacher = torch.einsum("bjd,jl->bld", union.float(), ae.encoder_weights().float())
    assert terms["teacher"].item() == pytest.approx((z - teacher).abs().mean().item(), rel=1e-4)
    (terms["latent_gt"] + terms["teacher"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters() if p.dim() > 1)
    # the teacher waits for its step; the latent variant trains only the decoded latents
    late = ACAEBridge(
        {"n_latent": 8, "variant": "hybrid", "teacher_start_step": 10}, weights, LATENT_MODEL, _mix()
    )
    late.fitted[:] = True
    assert "teacher" not in late.training_losses(lit, batch, outputs)
    latent = ACAEBridge({"n_latent": 8, "variant": "latent"}, weights, LATENT_MODEL, _mix())
    latent.fitted[:] = True
    assert set(latent.training_losses(lit, batch, outputs)) == {"latent_gt"}
    assert not len(_bridge().latent_heads)  # output_reg has none


def test_the_ae_does_not_train_and_bad_settings_are_named():
    bridge = _bridge()
    assert len(bridge.aes) == 1 and not any(p.requires_grad for p in bridge.parameters())
    assert bridge.extra_optimizer_params() == []
    with pytest.raises(ValueError, match="bridge.acae.variant='nope'"):
        _bridge(variant="nope")
    with pytest.raises(ValueError, match=r"loss.acae has unknown terms \['consistensy'\]"):
        ACAEBridge({}, {"consistensy": 1.0}, _model_config(), _mix())


def test_one_ae_per_family_with_two_skeletons():
    heads = {"c": ("coco", 17), "m": ("mpii", 16), "a": ("ap10k", 17), "t": ("apt36k", 17)}
    both = ACAEBridge({"n_latent": 8}, {}, _model_config(heads), _mix(heads))
    assert sorted(both.aes) == ["animal", "human"]
    heads = {"c": ("coco", 17), "m": ("mpii", 16), "a": ("ap10k", 17)}
    one = ACAEBridge({"n_latent": 8}, {}, _model_config(heads), _mix(heads))
    assert list(one.aes) == ["human"] and "a" not in one.index["human"]


# ------------------------------------------------------------------------------------------------ AE files
def test_ae_files_load_and_a_file_for_another_mix_is_named(tmp_path):
    bridge = _bridge()
    fitted = AffineCombiningAE.for_mix(
        {"syn_coco": "coco", "syn_mpii": "mpii"}, merge="none", n_latent=8, seed=9
    )[0]
    save_ae(tmp_path / "ok.pt", fitted)
    bridge.settings["weights"] = str(tmp_path / "ok.pt")
    bridge.load_files(reference=False)
    assert bool(bridge.fitted.all())
    assert torch.equal(bridge.aes["human"].reconstruction_weights(), fitted.reconstruction_weights())

    other = AffineCombiningAE.for_mix({"syn_coco": "coco", "syn_aic": "aic"}, merge="none", n_latent=8)[0]
    save_ae(tmp_path / "other.pt", other)
    fresh = _bridge(weights=str(tmp_path / "other.pt"))
    with pytest.raises(AEFileError, match=r"other\.pt.*another mix.*syn_aic"):
        fresh.load_files(reference=False)
    safe = AffineCombiningAE.for_mix({"syn_coco": "coco", "syn_mpii": "mpii"}, merge="safe", n_latent=8)[0]
    save_ae(tmp_path / "safe.pt", safe)
    with pytest.raises(AEFileError, match=r"bridge.acae.weights: .*safe\.pt.*joints.*merge=none"):
        _bridge(weights=str(tmp_path / "safe.pt")).load_files(reference=False)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(AEFileError, match=r"junk\.pt: not a readable AE file"):
        _bridge(reference_weights=str(tmp_path / "junk.pt")).load_files(reference=True)
    with pytest.raises(ValueError, match=r"bridge.acae.weights names families \['animal'\]"):
        _bridge(weights={"animal": "x.pt"}).load_files(reference=False)


# ------------------------------------------------------------------------------------------------ metrics
def test_bias_corrected_chd_removes_a_constant_definition_offset():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, size=(200, 3, 2))
    offset = np.array([0.1, -0.05])
    assert bias_corrected_chd(noise + offset) == pytest.approx(bias_corrected_chd(noise), rel=1e-9)
    assert bias_corrected_chd(noise + offset) < 0.02 < np.linalg.norm(noise + offset, axis=-1).mean()
    assert np.isnan(bias_corrected_chd(np.zeros((0, 3, 2))))


def test_predictability_is_zero_for_an_affine_function_of_a_and_sum_to_one():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 6, 2)) + rng.normal(size=(60, 1, 2)) * 5
    w = rng.uniform(-0.2, 1, size=(6, 4))
    w /= w.sum(0, keepdims=True)
    b = np.einsum("njc,jk->nkc", a, w)
    assert cross_head_predictability(a, b, np.ones(60), ridge=1e-9) < 1e-6
    fit = sum_to_one_lstsq(a, b, ridge=1e-9)
    assert np.allclose(fit.sum(0), 1.0) and np.allclose(fit, w, atol=1e-6)
    noisy = b + rng.normal(0, 0.3, size=b.shape)
    assert cross_head_predictability(a, noisy, np.ones(60)) > 0.1


# ------------------------------------------------------------------------------------------------ runs
def _fake_fit(calls: list):
    """Stands in for the pseudo-GT fit (acae_fit): AEs of the right shape, deterministic per template, and a log."""

    def fit(self, lit, family, templates):
        calls.append((family, len(templates)))
        out = []
        for i, _ in enumerate(templates):
            heads = {d: s for d, (s, _) in SMOKE_HEADS.items()}
            ae = AffineCombiningAE.for_mix(heads, family=family, merge="none", n_latent=8, seed=10 + i)[0]
            out.append(ae.state_dict())
        return out

    return fit


@pytest.fixture(scope="module")
def acae_runs(tiny_world, tmp_path_factory):
    """The ACAE fine-tune on the smoke mix: two epochs in one go (validated), and one stopped after epoch 1 then
    resumed from its last.ckpt."""
    from multipose.train import train

    tmp = tmp_path_factory.mktemp("acae_runs")
    calls: list = []
    mp = pytest.MonkeyPatch()
    mp.setattr(ACAEBridge, "fit_from_heads", _fake_fit(calls))
    base = [*SMOKE, *CKPT, *ACAE, "trainer.max_epochs=2", "bridge.acae.oracle_steps=200"]
    try:
        full = train(run_config(tmp / "full", tiny_world, base, validate=True))
        n_full = len(calls)
        train(run_config(tmp / "a", tiny_world, [*base, *stop_after_overrides(1)], validate=False))
        n_first = len(calls)
        resume = tmp / "a" / "run" / "checkpoints" / "last.ckpt"
        train(run_config(tmp / "b", tiny_world, [*base, f"ckpt_path={resume}"], validate=False))
    finally:
        mp.undo()
    return {
        "tmp": tmp,
        "metrics": full,
        "calls": calls,
        "n_full": n_full,
        "n_first": n_first,
        "resume": resume,
    }


def test_the_fitted_ae_is_in_the_checkpoint_and_resume_is_exact(acae_runs):
    tmp = acae_runs["tmp"]
    # fit start: the AE and the reference AE are fitted once (one pool, two halves); the resumed run refits nothing
    assert acae_runs["calls"][: acae_runs["n_full"]] == [("human", 2)]
    assert len(acae_runs["calls"]) == acae_runs["n_first"] == 2
    full = load_state(tmp / "full" / "run" / "checkpoints" / "last.ckpt")
    resumed = load_state(tmp / "b" / "run" / "checkpoints" / "last.ckpt")
    assert load_state(acae_runs["resume"])["global_step"] == 4
    assert full["global_step"] == resumed["global_step"] == 8
    sd = full["state_dict"]
    assert any(k.startswith("bridges.acae.aes.human.") for k in sd)
    assert any(k.startswith("bridges.acae.reference.human.") for k in sd)
    assert sd["bridges.acae.fitted"].all() and sd["bridges.acae.reference_fitted"].all()
    for key, value in sd.items():
        other = resumed["state_dict"][key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key
    assert sd["bridges.acae._extra_state"]["describe"]["human"]["datasets"] == {
        "syn_coco": "coco",
        "syn_mpii": "mpii",
    }
    # the AE held in the checkpoint is the one fitted at the start, unchanged by training
    start = _fake_fit([])(None, None, "human", [None, None])[0]
    for key, value in start.items():
        assert torch.equal(sd[f"bridges.acae.aes.human.{key}"], value), key


def test_the_fine_tune_trains_the_backbone_thirty_times_slower(acae_runs):
    import csv

    rows = list(csv.DictReader(open(next((acae_runs["tmp"] / "full" / "run").rglob("metrics.csv")))))
    assert any(float(r.get("train/acae/consistency") or 0) > 0 for r in rows)
    assert any(float(r.get("train/acae/aegt") or 0) > 0 for r in rows)
    cfg = compose("train", [*SMOKE, *ACAE])
    assert cfg.optim.module_lr_mult.backbone == pytest.approx(1 / 30)
    assert cfg.optim.module_lr_mult.experts == pytest.approx(1 / 30)


def test_validation_scores_the_projection_and_the_label_free_metrics(acae_runs):
    m = acae_runs["metrics"]
    for ds in ("syn_coco", "syn_mpii"):
        assert 0 <= m[f"val/{ds}/consistency/CHD_bc"] < m[f"val/{ds}/consistency/CHD"] + 1e-9
        assert m[f"val/{ds}/consistency/acae_residual"] > 0
        assert m[f"val/{ds}/consistency/predictability"] > 0
    assert 0 <= m["val/syn_coco/acae/AP"] <= 1
    assert "val/syn_mpii/acae/PCKh@0.5" in m
    assert any(k.startswith("val/syn_coco/cross/syn_mpii/acae/") for k in m)


def test_hybrid_run_trains_and_scores_the_latent_head(tiny_world, tmp_path):
    from multipose.bridges.acae import projector_from_checkpoint
    from multipose.train import train

    over = [
        *SMOKE,
        *CKPT,
        *ACAE,
        "trainer.max_epochs=1",
        "bridge.acae.variant=hybrid",
        "bridge.acae.oracle=false",
    ]
    mp = pytest.MonkeyPatch()
    mp.setattr(ACAEBridge, "fit_from_heads", _fake_fit([]))
    try:
        m = train(run_config(tmp_path, tiny_world, over, validate=True))
    finally:
        mp.undo()
    assert 0 <= m["val/syn_coco/acae_latent/AP"] <= 1 and "val/syn_mpii/acae_latent/PCKh@0.5" in m
    assert "val/syn_coco/acae/AP" in m and not any("oracle" in k for k in m)
    assert m["train/acae/latent_gt"] > 0 and m["train/acae/teacher"] > 0 and m["train/acae/consistency"] > 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    sd = load_state(ckpt)["state_dict"]
    assert any(k.startswith("bridges.acae.latent_heads.human.") for k in sd)
    assert projector_from_checkpoint(ckpt).families  # the latent head loads with the bridge


def test_validation_reports_the_oracle_on_hidden_ground_truth(acae_runs):
    m = acae_runs["metrics"]
    for ds in ("syn_coco", "syn_mpii"):
        oracle, ours = m[f"val/{ds}/acae/oracle_residual"], m[f"val/{ds}/acae/hidden_residual"]
        assert 0 < oracle < ours  # the AE fitted on hidden GT beats the run's (here: an unfitted stand-in)
        assert m[f"val/{ds}/acae/oracle_gap"] == pytest.approx(ours - oracle)
    # the oracle lives on the bridge only: the checkpoint holds the run's AE and the reference AE, nothing else
    sd = load_state(acae_runs["tmp"] / "full" / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    assert not [k for k in sd if "oracle" in k]
    assert {k.split(".")[2] for k in sd if k.startswith("bridges.acae.") and k.count(".") > 3} == {
        "aes",
        "reference",
    }


def test_figures_reach_the_run_pictures(acae_runs):
    import cv2

    pictures = acae_runs["tmp"] / "full" / "run" / "pictures"
    enc = cv2.imread(str(pictures / "acae_encoder_human.png"))
    lat = cv2.imread(str(pictures / "acae_latents_human.png"))
    assert enc is not None and lat is not None
    # the encoder image: one 9-pixel row per union joint (17 COCO + 16 MPII), colours beyond white and black
    assert enc.shape[0] == 9 * 33 and len(np.unique(enc.reshape(-1, 3), axis=0)) > 10
    assert lat.shape[0] == 256 and lat.shape[1] >= 256 * 48 // 64


def test_figure_drawing_puts_latents_where_they_are():
    from multipose.bridges.acae_figures import LATENT_COLOURS, latents_image, weights_image

    crop = np.zeros((3, 64, 48), np.float32)
    crop[0, 0, 0] = 1.0  # min-max stretch: a black crop with one bright pixel
    joints = np.array([[[10.0, 10.0], [30.0, 50.0]]])
    latents = np.array([[[12.0, 40.0], [40.0, 8.0], [24.0, 24.0]]])  # left, right, central (n_sided = 2)
    img = latents_image([crop], joints, np.array([[1.0, 0.0]]), latents, n_sided=2, height=128)
    assert img.shape == (128, 96, 3) and img.dtype == np.uint8
    for (x, y), colour in zip(latents[0] * 2, LATENT_COLOURS, strict=True):
        assert tuple(img[int(y), int(x)]) == colour
    assert tuple(img[20, 20]) == (160, 160, 160) and tuple(img[100, 60]) == (0, 0, 0)  # weight 0: not drawn
    w = weights_image(np.array([[1.0, -1.0, 0.0]]), ["a"], n_sided=2, cell=4, label_w=10)
    assert w.shape == (4, 22, 3)
    assert (
        tuple(w[1, 11]) == (255, 0, 0)
        and tuple(w[1, 15]) == (0, 0, 255)
        and tuple(w[1, 19]) == (255, 255, 255)
    )
    with pytest.raises(ValueError, match="one name per row"):
        weights_image(np.ones((2, 3)), ["a"])


def test_oracle_is_absent_without_hidden_ground_truth(tiny_world):
    import hydra

    cfg = compose("train", ["+experiment=smoke", f"data.root={tiny_world}", "data.num_workers=0"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.setup("fit")
    for name in dm.dataset_names:  # real data: no hidden all-skeleton ground truth
        for inst in dm.train_datasets[dm.dataset_names.index(name)].instances + dm.val_instances(name):
            inst.extra_gt = {}
    bridge = _bridge(oracle_steps=5)
    bridge.fitted[:] = True
    lit = SimpleNamespace(_trainer=SimpleNamespace(datamodule=dm))
    val = dm.val_instances("syn_coco")[:2]
    batch = {"ann_id": torch.tensor([i.ann_id for i in val])}
    assert bridge._hidden_batch(lit, "human", "syn_coco", batch) is None
    assert bridge.oracle(lit, "human") is None
    fake = [
        (
            np.zeros((2, bridge.aes["human"].n_joints, 2)),
            np.ones((2, bridge.aes["human"].n_joints)),
            np.ones(2),
        )
    ]
    assert bridge._oracle_metrics(lit, "syn_coco", fake) == {}


def test_predictor_and_predict_project(acae_runs, tiny_world, tmp_path):
    import hydra

    from multipose.bridges.acae import projector_from_checkpoint
    from multipose.inference import Predictor
    from multipose.predict import load_for_inference, main

    ckpt = acae_runs["tmp"] / "full" / "run" / "checkpoints" / "last.ckpt"
    model, spec, _ = load_for_inference(ckpt)
    projector = projector_from_checkpoint(ckpt)
    cfg = compose("train", ["+experiment=smoke", f"data.root={tiny_world}"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()[0]))
    predictor = Predictor(model, spec, projector=projector)
    raw = predictor.predict_batch(batch, "syn_coco", ["syn_coco", "syn_mpii"])
    proj = predictor.predict_batch(batch, "syn_coco", ["syn_coco"], project=True)
    assert list(proj) == ["syn_coco"]
    expect = projector({h: p.keypoints for h, p in raw.items()})["syn_coco"]
    np.testing.assert_allclose(proj["syn_coco"].keypoints, expect, atol=1e-4)
    assert not np.allclose(proj["syn_coco"].keypoints[..., :2], raw["syn_coco"].keypoints[..., :2])
    np.testing.assert_array_equal(proj["syn_coco"].keypoints[..., 2], raw["syn_coco"].keypoints[..., 2])
    with pytest.raises(ValueError, match="needs a Predictor built with an ACAE projector"):
        Predictor(model, spec).predict_batch(batch, "syn_coco", project=True)
    image = next((tiny_world / "syn_coco" / "images" / "val").iterdir())
    out = tmp_path / "out"
    assert main([str(ckpt), str(image), "--out", str(out), "--project", "--no-progress"]) == 0
    assert (out / "results_coco.json").is_file()


def test_project_needs_an_acae_checkpoint(tmp_path):
    from multipose.bridges.acae import projector_from_checkpoint

    torch.save(
        {"state_dict": {}, "hyper_parameters": {"model_config": _model_config()}}, tmp_path / "plain.ckpt"
    )
    with pytest.raises(ValueError, match=r"plain\.ckpt: this checkpoint has no ACAE.*\+bridge=acae"):
        projector_from_checkpoint(tmp_path / "plain.ckpt")


# ------------------------------------------------------------------------------------------------ configs
def test_full_mix_with_acae_composes_and_validates():
    from multipose.config_validation import validate_train_config

    cfg = compose("train", ["+experiment=full_mix", "+bridge=acae"])
    validate_train_config(cfg, check_files=False)
    assert cfg.loss.acae.consistency > 0 and cfg.evaluation.acae_projection
    heads = {n: (str(e.skeleton), 0) for n, e in cfg.data.datasets.items()}
    bridge = ACAEBridge(dict(cfg.bridge.acae), dict(cfg.loss.acae), _model_config(heads))
    assert sorted(bridge.aes) == ["animal", "human"]
    demo = compose("train", ["+experiment=acae_demo"])
    validate_train_config(demo, check_files=False)
    assert demo.bridge.acae.variant == "output_reg" and demo.stage.stages[0].name == "acae_finetune"


# ------------------------------------------------------------------------------------------------ DDP
@pytest.mark.slow
def test_ddp_acae_stage_two_processes(tmp_path, tiny_world):
    """Two CPU processes run the ACAE fine-tune (AEs from files, every head on every sample): both ranks end
    with identical weights and the AE unchanged."""
    ae = AffineCombiningAE.for_mix(
        {"syn_coco": "coco", "syn_mpii": "mpii"}, merge="none", n_latent=8, seed=4
    )[0]
    save_ae(tmp_path / "ae.pt", ae)
    probe = tmp_path / "probe"
    args = [
        *SMOKE,
        *ACAE,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        f"bridge.acae.weights={tmp_path / 'ae.pt'}",
        f"bridge.acae.reference_weights={tmp_path / 'ae.pt'}",
        *probe_overrides(probe),
        f"paths.root_dir={tmp_path}",
        f"data.root={tiny_world}",
        "print_config=false",
    ]
    run_train_cli(args, check=True)
    end = {r: load_state(probe / f"rank{r}_end.pt") for r in (0, 1)}
    start = load_state(probe / "rank0_epoch0.pt")
    for key in end[0]:
        assert torch.equal(end[0][key], end[1][key]), key
    assert any(not torch.equal(start[k], end[0][k]) for k in start if k.startswith("backbone."))
