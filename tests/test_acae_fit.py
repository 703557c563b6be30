"""Fitting the ACAE: determinism, the synthetic world's hidden ground truth, pseudo-GT collection, new skeletons,
the oracle report and the command line."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from conftest import compose
from multipose.bridges.acae_fit import (
    collect_pseudo_gt,
    fit_acae,
    fit_affine_map,
    hidden_union,
    new_skeleton_keypoints,
    oracle_report,
    select_pool,
)
from multipose.bridges.acae_model import AffineCombiningAE
from train_helpers import untrained_checkpoint

HUMANS = ("syn_coco", "syn_aic", "syn_mpii", "syn_wholebody")


@pytest.fixture(scope="module")
def datamodule(tiny_world):
    cfg = compose("train", [f"data.root={tiny_world}", "data.num_workers=0", "data.synthetic.config=tiny"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def human_instances(datamodule):
    dm = datamodule
    out = []
    for n in HUMANS:
        out += dm.train_datasets[dm.dataset_names.index(n)].instances + dm.val_instances(n)
    return out


def _toy_poses(n: int = 300, seed: int = 0):
    ae = AffineCombiningAE(["a", "b", "c", "la", "ra"], [0, 1, 2, 4, 3], n_latent=4, n_latent_sided=2, seed=9)
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, 5, 2, generator=g, dtype=torch.float64)
    w = (torch.rand(n, 5, generator=g, dtype=torch.float64) > 0.1).double()
    return ae, P, w


def test_fitting_is_deterministic_given_the_seed():
    runs = []
    for seed in (0, 0, 1):
        ae, P, w = _toy_poses()
        runs.append(fit_acae(P, w, ae, steps=60, batch_size=32, seed=seed))
    a, b, c = runs
    assert torch.equal(a.ae.reconstruction_weights(), b.ae.reconstruction_weights())
    assert torch.equal(a.val_idx, b.val_idx) and a.heldout_mean == b.heldout_mean
    assert not torch.equal(a.ae.reconstruction_weights(), c.ae.reconstruction_weights())
    assert len(a.val_idx) == 30 and set(a.val_idx.tolist()).isdisjoint(a.train_idx.tolist())


def test_fit_reduces_the_held_out_error_and_validates_shapes():
    ae, P, w = _toy_poses()
    before = fit_acae(
        P, w, AffineCombiningAE(ae.joint_names, ae.partners, 4, 2, seed=9), steps=1
    ).heldout_mean
    after = fit_acae(P, w, ae, steps=300, lam=0.01).heldout_mean
    assert after < 0.8 * before
    with pytest.raises(ValueError, match=r"poses must be \[N, 5, D\]"):
        fit_acae(P[:, :4], w[:, :4], ae, steps=1)


def test_hidden_gt_fit_reconstructs_coco_and_wholebody_body_joints_alike(datamodule, human_instances):
    """Fitted on the synthetic world's hidden ground truth with every dataset's joints kept apart, the AE learns
    that COCO's and COCO-WholeBody's body joints are the same points: near-zero residual on both, and the two
    reconstructions agree."""
    ae, idx = AffineCombiningAE.for_mix(datamodule.skeletons, merge="none", n_latent=32, seed=0)
    P, w = hidden_union(human_instances, ae)
    result = fit_acae(P, w, ae, steps=600, batch_size=256, lam=0.3, val_fraction=0.25, seed=0)
    Pv, wv = P[result.val_idx], w[result.val_idx]
    Pv = Pv - Pv.mean(-2, keepdim=True)
    rec = ae(Pv)
    coco, wb = idx["syn_coco"], idx["syn_wholebody"][:17]
    both = (wv[:, coco] > 0) & (wv[:, wb] > 0)
    assert both.sum() > 100
    assert (Pv[:, coco] - Pv[:, wb]).norm(dim=-1)[both].max() < 1e-6  # the ground truth agrees exactly
    residual = (rec[:, coco] - Pv[:, coco]).norm(dim=-1)[both].mean()
    agreement = (rec[:, coco] - rec[:, wb]).norm(dim=-1)[both].mean()
    assert residual < 0.02, residual  # < 2 % of the box side
    assert agreement < 0.25 * residual + 1e-4, (agreement, residual)
    # AIC's hips are another landmark (higher on the torso): the AE keeps them apart
    aic_hip = idx["syn_aic"][9]
    coco_hip = idx["syn_coco"][11]
    seen = (wv[:, aic_hip] > 0) & (wv[:, coco_hip] > 0)
    assert (rec[:, aic_hip] - rec[:, coco_hip]).norm(dim=-1)[seen].mean() > 0.02


def test_oracle_report_compares_aes_on_hidden_gt(datamodule, human_instances):
    oracle, _ = AffineCombiningAE.for_mix(datamodule.skeletons, n_latent=16)
    P, w = hidden_union(human_instances, oracle)
    fit = fit_acae(P, w, oracle, steps=300, batch_size=128, seed=0)
    untrained, _ = AffineCombiningAE.for_mix(datamodule.skeletons, n_latent=16, seed=5)
    report = oracle_report({"oracle": oracle, "untrained": untrained}, P[fit.val_idx], w[fit.val_idx])
    assert report["oracle"]["residual"] < 0.5 * report["untrained"]["residual"]
    assert set(report["oracle"]["per_joint"]) == set(oracle.joint_names)
    with pytest.raises(ValueError, match="hidden ground truth"):
        no_gt = [type(i)(**{**i.__dict__, "extra_gt": {}}) for i in human_instances[:2]]
        hidden_union(no_gt, oracle)


def test_affine_map_recovers_a_sparse_sum_to_one_map():
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(400, 8, 2, generator=g, dtype=torch.float64)
    M = torch.zeros(8, 3, dtype=torch.float64)
    M[0, 0], M[1, 0] = 0.5, 0.5  # midpoint
    M[2, 1], M[3, 1] = 1.5, -0.5  # extrapolation beyond latent 2
    M[4, 2] = 1.0  # a copy
    T = torch.einsum("nld,lk->nkd", Z, M)
    w = torch.ones(400, 3, dtype=torch.float64)
    w[:50, 1] = 0.0
    T[:50, 1] += 100.0  # unlabelled joints carry garbage; weight 0 must ignore it
    fitted = fit_affine_map(Z, T, w, lam=1e-4, iters=2000)
    torch.testing.assert_close(fitted.sum(0), torch.ones(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(fitted, M, atol=2e-3, rtol=0)
    # a strong l1 penalty keeps the columns summing to 1 but shrinks the spread of weights
    sparse = fit_affine_map(Z, T, w, lam=5.0, iters=2000)
    torch.testing.assert_close(sparse.sum(0), torch.ones(3, dtype=torch.float64), atol=1e-9, rtol=0)
    assert sparse.abs().sum() < fitted.abs().sum()
    with pytest.raises(ValueError, match="never labelled"):
        fit_affine_map(Z, T, torch.zeros_like(w))


def test_affine_map_ignores_poses_without_scale(caplog):
    """A pose with one labelled joint has no vertical spread: per-pose normalisation by it would scale its rows by
    ~1e6 and let one noisy instance decide the map. It is left out, with a warning naming it."""
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(200, 8, 2, generator=g, dtype=torch.float64)
    M = torch.zeros(8, 3, dtype=torch.float64)
    M[0, 0], M[1, 0], M[2, 1], M[3, 2] = 0.5, 0.5, 1.0, 1.0
    T = torch.einsum("nld,lk->nkd", Z, M)
    w = torch.ones(200, 3, dtype=torch.float64)
    clean = fit_affine_map(Z, T, w, lam=1e-4, iters=2000)
    Zb, Tb, wb = Z.clone(), T.clone(), w.clone()
    wb[7] = torch.tensor([1.0, 0.0, 0.0])  # one labelled joint
    Tb[7, 0] += 0.3 * torch.randn(2, generator=g, dtype=torch.float64)  # and a noisy one
    with caplog.at_level("WARNING", logger="multipose.bridges.acae_fit"):
        fitted = fit_affine_map(Zb, Tb, wb, lam=1e-4, iters=2000)
    assert "1 of 200 poses" in caplog.text and "[7]" in caplog.text
    torch.testing.assert_close(fitted, clean, atol=2e-3, rtol=0)
    torch.testing.assert_close(fitted, M, atol=2e-3, rtol=0)


def test_new_skeleton_keypoints_come_from_the_encoder_or_the_projected_latents():
    ae, _ = AffineCombiningAE.for_mix({"a": "coco", "b": "mpii"}, n_latent=8)
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(4, 8, 2, generator=g, dtype=torch.float64)
    P = ae.decode(Z)
    M = torch.softmax(torch.randn(8, 5, generator=g, dtype=torch.float64), 0)
    w = torch.ones(4, ae.n_joints, dtype=torch.float64)
    coords, scores = new_skeleton_keypoints(ae, M, P, w)
    # the union pose lies in the AE's range, but its latents are determined only up to the decoder's null space
    torch.testing.assert_close(ae.decode(ae.project_latents(P, w)), P)
    assert coords.shape == (4, 5, 2) and torch.allclose(scores, torch.ones(4, 5, dtype=torch.float64))
    half = w.clone()
    half[:, ::2] = 0.5
    _, lower = new_skeleton_keypoints(ae, M, P, half)
    assert (lower < 1).all() and (lower >= 0.5).all()
    # the default latents are the encoder's (confidences then only score); projection is the older choice
    torch.testing.assert_close(coords, torch.einsum("nld,lk->nkd", ae.encode(P), M))
    torch.testing.assert_close(coords, new_skeleton_keypoints(ae, M, P, half)[0])
    projected, _ = new_skeleton_keypoints(ae, M, P, half, latents="projection")
    torch.testing.assert_close(projected, torch.einsum("nld,lk->nkd", ae.project_latents(P, half), M))
    with pytest.raises(ValueError, match="latents='pca'"):
        new_skeleton_keypoints(ae, M, P, w, latents="pca")


def test_select_pool_is_seeded_and_skips_mostly_unlabelled_instances(datamodule):
    dm = datamodule
    insts = {n: dm.train_datasets[dm.dataset_names.index(n)].instances for n in HUMANS}
    a = select_pool(insts, 16, seed=0)
    assert {k: v.tolist() for k, v in a.items()} == {
        k: v.tolist() for k, v in select_pool(insts, 16, seed=0).items()
    }
    assert all(len(v) <= 4 for v in a.values())
    for n, idx in a.items():
        for i in idx:
            assert (np.asarray(insts[n][i].keypoints)[:, 2] > 0).mean() >= 0.5
    with pytest.raises(ValueError, match="pool"):
        select_pool(insts, 0)


def test_collect_pseudo_gt_runs_every_head_into_the_union(datamodule):
    from multipose.models.build import model_from_config

    dm = datamodule
    config = {
        "backbone": {
            "name": "vit_tiny",
            "img_size": list(dm.input_size),
            "drop_path_rate": 0.0,
            "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2},
        },
        "head": {"type": "classic", "deconv_filters": [16, 16]},
        "heads": {n: {"skeleton": s.name, "num_keypoints": s.num_keypoints} for n, s in dm.skeletons.items()},
    }
    torch.manual_seed(0)
    model = model_from_config(config)
    model.train()
    ae, idx = AffineCombiningAE.for_mix(dm.skeletons, n_latent=8)
    pgt = collect_pseudo_gt(model, dm, ae, pool=8, seed=0, batch_size=4)
    assert model.training, "the model's mode is restored"
    n = pgt.poses.shape[0]
    assert 4 <= n <= 8 and pgt.poses.shape == (n, ae.n_joints, 2) and pgt.weights.shape == (n, ae.n_joints)
    assert pgt.datasets == list(HUMANS) and set(pgt.sources.tolist()) <= {0, 1, 2, 3}
    assert (pgt.weights >= 0).all() and (
        pgt.weights[:, idx["syn_coco"]] > 0
    ).all()  # every head sees every sample
    assert pgt.hidden is not None and pgt.hidden.shape == pgt.poses.shape
    # hidden GT and the sample's own label agree where both exist (same crop normalisation)
    run = pgt.runs["syn_coco"]
    lab = run.gt[..., 2] > 0
    torch.testing.assert_close(run.gt[..., :2][lab], run.hidden["coco"][..., :2][lab], atol=1e-4, rtol=0)
    again = collect_pseudo_gt(model, dm, ae, pool=8, seed=0, batch_size=4)
    assert torch.equal(again.poses, pgt.poses)


# --------------------------------------------------------------------------------------------------
# python -m multipose.acae
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_ckpt(tiny_world, tmp_path_factory):
    """A smoke-sized model with random weights (syn_coco + syn_mpii heads), saved as a Lightning checkpoint."""
    tmp = tmp_path_factory.mktemp("acae_cli")
    cfg = compose("train", ["+experiment=smoke", f"data.root={tiny_world}"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    ckpt = tmp / "model.ckpt"
    untrained_checkpoint(cfg, dm, ckpt)
    return ckpt, [f"data.root={tiny_world}", "+experiment=smoke"], dm


def test_cli_fit_then_add_a_held_out_skeleton(smoke_ckpt, tmp_path, capsys):
    from multipose.acae import main
    from multipose.bridges.acae_model import load_ae

    ckpt, data, dm = smoke_ckpt
    ae_file = tmp_path / "ae.pt"
    common = [f"ckpt_path={ckpt}", *data]
    assert (
        main(["fit", *common, f"out={ae_file}", "pool=8", "steps=20", "n_latent=8", "exclude=syn_mpii"]) == 0
    )
    printed = capsys.readouterr().out
    assert "held-out reconstruction error per joint" in printed and "residual of the oracle AE" in printed
    coco_only = {"syn_coco": dm.skeletons["syn_coco"]}
    ae, extra = load_ae(ae_file, expect=AffineCombiningAE.for_mix(coco_only, merge="none", n_latent=8)[0])
    assert list(ae.index_map) == ["syn_coco"] and extra["fit"]["pool"] > 0
    assert set(extra["fit"]["heldout_per_joint"]) == set(ae.joint_names)

    out = tmp_path / "ae_mpii.pt"
    assert (
        main(["add-skeleton", "syn_mpii", *common, f"ae={ae_file}", f"out={out}", "n=[4,8]", "iters=200"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "N=4" in printed and "N=8" in printed and "trained head" in printed and "PCKh@0.5" in printed
    ae2, extra2 = load_ae(out, expect=ae)
    new = extra2["extra_skeletons"]["syn_mpii"]
    assert new["skeleton"] == "mpii" and new["weights"].shape == (8, 16) and new["instances"] == 8
    assert new["latents"] == "encoder"
    torch.testing.assert_close(new["weights"].sum(0), torch.ones(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(ae2.reconstruction_weights(), ae.reconstruction_weights())


def test_cli_errors_name_the_option(smoke_ckpt, tmp_path, capsys):
    from multipose.acae import main

    ckpt, data, _ = smoke_ckpt
    with pytest.raises(SystemExit) as exc:
        main(["fit", f"ckpt_path={ckpt}", *data])
    assert exc.value.code == 2 and "out=... is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"out={tmp_path / 'a.pt'}", *data])
    assert "does not exist" in capsys.readouterr().err
    # an AE fitted for another mix (COCO + MPII union) cannot serve one that lacks MPII
    other, _ = AffineCombiningAE.for_mix({"syn_coco": "coco", "syn_aic": "aic"})
    from multipose.bridges.acae_model import save_ae

    save_ae(tmp_path / "other.pt", other)
    with pytest.raises(SystemExit):
        main(
            [
                "add-skeleton",
                "syn_mpii",
                f"ckpt_path={ckpt}",
                f"ae={tmp_path / 'other.pt'}",
                f"out={tmp_path / 'b.pt'}",
                *data,
            ]
        )
    assert "syn_aic" in capsys.readouterr().err


def test_cli_fits_and_adds_a_set_the_model_never_trained_on(smoke_ckpt, tmp_path, capsys):
    """Hold-one-out: a model without a syn_mpii head, the mix with syn_mpii. ``fit exclude=[syn_mpii]`` and
    ``add-skeleton syn_mpii`` accept the head-less set; any other head-less set is an error naming the way out."""
    from multipose.acae import main

    _, data, _ = smoke_ckpt
    cfg = compose("train", [*data, "~data.datasets.syn_mpii", "data.batch_size=4"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    ckpt = tmp_path / "coco_only.ckpt"
    untrained_checkpoint(cfg, dm, ckpt)
    common = [f"ckpt_path={ckpt}", *data]
    with pytest.raises(SystemExit):
        main(["fit", *common, f"out={tmp_path / 'x.pt'}", "pool=8", "steps=20", "n_latent=8"])
    err = capsys.readouterr().err
    assert "['syn_mpii']" in err and "no head for" in err and "exclude=" in err
    ae_file = tmp_path / "ae.pt"
    fit = [
        "fit",
        *common,
        f"out={ae_file}",
        "pool=8",
        "steps=20",
        "n_latent=8",
        "exclude=syn_mpii",
        "oracle=false",
    ]
    assert main(fit) == 0
    out = tmp_path / "ae_mpii.pt"
    add = ["add-skeleton", "syn_mpii", *common, f"ae={ae_file}", f"out={out}", "n=[4]", "iters=200"]
    assert main(add) == 0
    printed = capsys.readouterr().out
    assert "N=4" in printed and "PCKh@0.5" in printed and "trained head" not in printed
