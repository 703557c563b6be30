"""The affine-combining autoencoder: affine constraint, equivariances, chirality, projection, union, files."""

from __future__ import annotations

import math

import pytest
import torch

from multipose.bridges.acae_model import (
    AEFileError,
    AffineCombiningAE,
    family_aes,
    gather_union,
    load_ae,
    mix_families,
    save_ae,
)
from multipose.skeletons import get_skeleton

MIX = {
    "syn_coco": "coco",
    "syn_aic": "aic",
    "syn_mpii": "mpii",
    "syn_wholebody": "coco_wholebody",
    "syn_ap10k": "ap10k",
}


def mirror(P: torch.Tensor, partners) -> torch.Tensor:
    out = P[..., list(partners), :].clone()
    out[..., 0] = -out[..., 0]
    return out


def scrambled(ae: AffineCombiningAE, seed: int = 1) -> AffineCombiningAE:
    """The same AE with every raw block re-drawn (so tests do not rely on the initial weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ae.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 1.1 - 0.1)
    return ae


@pytest.fixture(scope="module")
def human() -> AffineCombiningAE:
    ae, _ = AffineCombiningAE.for_mix(MIX, family="human", n_latent=32)
    return scrambled(ae)


def test_every_normalised_weight_vector_sums_to_one(human):
    enc, dec = human.encoder_weights(), human.decoder_weights()
    assert enc.shape == (human.n_joints, 32) and dec.shape == (32, human.n_joints)
    torch.testing.assert_close(enc.sum(0), torch.ones(32, dtype=enc.dtype))
    torch.testing.assert_close(dec.sum(0), torch.ones(human.n_joints, dtype=dec.dtype))
    torch.testing.assert_close(
        human.reconstruction_weights().sum(0), torch.ones(human.n_joints, dtype=enc.dtype)
    )
    assert (enc < 0).any(), "weights are signed (affine, not convex)"


def test_ae_commutes_with_a_random_affine_map(human):
    g = torch.Generator().manual_seed(3)
    P = torch.randn(5, human.n_joints, 2, generator=g, dtype=torch.float64)
    A = torch.randn(2, 2, generator=g, dtype=torch.float64)
    t = torch.randn(2, generator=g, dtype=torch.float64)
    moved = P @ A.T + t
    torch.testing.assert_close(human(moved), human(P) @ A.T + t)
    torch.testing.assert_close(human.encode(moved), human.encode(P) @ A.T + t)
    w = torch.rand(5, human.n_joints, generator=g, dtype=torch.float64)
    torch.testing.assert_close(human.project(moved, w), human.project(P, w) @ A.T + t)


def test_mirroring_commutes_exactly(human):
    P = torch.randn(7, human.n_joints, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    lat = human.encode(P)
    # the weight matrices are exactly invariant under swapping partner joints and partner latents ...
    enc, dec = human.encoder_weights(), human.decoder_weights()
    jp, lp = list(human.partners), list(human.latent_partners)
    assert torch.equal(enc[jp][:, lp], enc) and torch.equal(dec[lp][:, jp], dec)
    raw = human.enc_raw(normalise=False)
    assert torch.equal(raw[jp][:, lp], raw) and not torch.equal(raw[jp], raw)
    # ... so the mirrored pose gives the mirrored latents and reconstruction (up to float summation order)
    torch.testing.assert_close(
        human.encode(mirror(P, human.partners)), mirror(lat, human.latent_partners), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        human(mirror(P, human.partners)), mirror(human(P), human.partners), rtol=0, atol=1e-12
    )
    # the partners come from the skeletons' flip pairs: COCO's left wrist mirrors to its right wrist
    coco = get_skeleton("coco")
    _, idx = AffineCombiningAE.for_mix(MIX)
    lw, rw = coco.index("left_wrist"), coco.index("right_wrist")
    assert human.partners[int(idx["syn_coco"][lw])] == int(idx["syn_coco"][rw])


def test_projection_keeps_poses_in_the_range_and_fills_zero_weight_joints(human):
    g = torch.Generator().manual_seed(5)
    Z = torch.randn(3, 32, 2, generator=g, dtype=torch.float64)
    P = human.decode(Z)
    torch.testing.assert_close(human.project(P, torch.ones(3, human.n_joints, dtype=torch.float64)), P)
    w = torch.rand(3, human.n_joints, generator=g, dtype=torch.float64) + 0.1
    torch.testing.assert_close(human.project(P, w), P)
    corrupted, w0 = P.clone(), w.clone()
    corrupted[:, [0, 9, 20]] += 5.0  # garbage at three joints the heads were not confident about
    w0[:, [0, 9, 20]] = 0.0
    torch.testing.assert_close(human.project(corrupted, w0), P, atol=1e-5, rtol=0)
    # the plain reconstruction, by contrast, spreads the garbage
    assert (human(corrupted) - P).abs().max() > 1e-2


def test_l1_penalty_is_the_mean_abs_of_the_normalised_matrices(human):
    want = human.encoder_weights().abs().mean() + human.decoder_weights().abs().mean()
    assert human.l1_penalty().item() == pytest.approx(want.item())
    human.l1_penalty().backward()
    assert all(p.grad is not None for p in human.parameters())
    human.zero_grad()


def test_union_of_the_mix_merges_safe_tags_and_keeps_definition_variants_apart():
    ae, idx = AffineCombiningAE.for_mix(MIX)
    assert set(idx) == {"syn_coco", "syn_aic", "syn_mpii", "syn_wholebody"}
    coco, aic = get_skeleton("coco"), get_skeleton("aic")
    # a wrist is one joint of the union, whichever skeleton names it
    assert idx["syn_coco"][coco.index("left_wrist")] == idx["syn_aic"][aic.index("left_wrist")]
    # hips are approximate (different definitions): one union joint per dataset
    assert idx["syn_coco"][coco.index("left_hip")] != idx["syn_aic"][aic.index("left_hip")]
    # whole-body face and hands are out by default, feet are in
    assert (idx["syn_wholebody"][23:] == -1).all() and (idx["syn_wholebody"][:23] >= 0).all()
    assert len(set(idx["syn_coco"].tolist())) == 17
    full, idx_full = AffineCombiningAE.for_mix(MIX, parts=("body", "face", "hand"))
    assert (idx_full["syn_wholebody"] >= 0).all() and full.n_joints == ae.n_joints + 68 + 42
    merged, _ = AffineCombiningAE.for_mix(MIX, merge="all")
    separate, _ = AffineCombiningAE.for_mix(MIX, merge="none")
    assert merged.n_joints < ae.n_joints < separate.n_joints == 17 + 14 + 16 + 23
    assert mix_families(MIX) == {
        "human": ["syn_coco", "syn_aic", "syn_mpii", "syn_wholebody"],
        "animal": ["syn_ap10k"],
    }
    animal, aidx = AffineCombiningAE.for_mix(MIX, family="animal")
    assert list(aidx) == ["syn_ap10k"] and animal.n_joints == 17


def test_bad_arguments_name_the_option():
    with pytest.raises(ValueError, match="symmetric"):
        AffineCombiningAE(["a", "b", "c"], [1, 2, 0])
    with pytest.raises(ValueError, match="n_latent_sided"):
        AffineCombiningAE(["a", "b"], [1, 0], n_latent=4, n_latent_sided=3)
    with pytest.raises(ValueError, match="merge"):
        AffineCombiningAE.for_mix(MIX, merge="some")
    with pytest.raises(ValueError, match="parts"):
        AffineCombiningAE.for_mix(MIX, parts=("tail",))
    ae = AffineCombiningAE(["a", "b", "c"], [1, 0, 2], n_latent=4)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, D\]"):
        ae(torch.zeros(2, 4, 2))


def test_initialisation_is_a_function_of_the_seed():
    a = AffineCombiningAE.for_mix(MIX, seed=3)[0].encoder_weights()
    b = AffineCombiningAE.for_mix(MIX, seed=3)[0].encoder_weights()
    c = AffineCombiningAE.for_mix(MIX, seed=4)[0].encoder_weights()
    assert torch.equal(a, b) and not torch.equal(a, c)
    raw = torch.cat([p.detach().flatten() for p in AffineCombiningAE.for_mix(MIX)[0].parameters()])
    assert raw.min() >= -0.1 and raw.max() <= 1.0  # U(-0.1, 1)
    assert math.isclose(raw.mean().item(), 0.45, abs_tol=0.05)


def test_gather_union_averages_shared_joints_by_confidence():
    ae, idx = AffineCombiningAE.for_mix(MIX)
    coco, aic = get_skeleton("coco"), get_skeleton("aic")
    pc, pa = torch.zeros(2, 17, 2), torch.ones(2, 14, 2)
    wc, wa = torch.full((2, 17), 0.75), torch.full((2, 14), 0.25)
    pose, weight = gather_union(
        {"syn_coco": pc, "syn_aic": pa}, {"syn_coco": wc, "syn_aic": wa}, idx, ae.n_joints
    )
    j = int(idx["syn_coco"][coco.index("left_wrist")])
    assert pose[0, j].tolist() == pytest.approx([0.25, 0.25]) and weight[0, j].item() == pytest.approx(0.5)
    h = int(idx["syn_aic"][aic.index("left_hip")])
    assert pose[0, h].tolist() == pytest.approx([1.0, 1.0]) and weight[0, h].item() == pytest.approx(0.25)
    unseen = int(idx["syn_mpii"][get_skeleton("mpii").index("pelvis")])
    assert weight[0, unseen] == 0


def test_ae_file_round_trip_and_mismatch_errors(tmp_path):
    ae, _ = AffineCombiningAE.for_mix(MIX, n_latent=16)
    scrambled(ae, 7)
    path = save_ae(tmp_path / "ae.pt", ae, {"note": "x"})
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"
    back, extra = load_ae(path, expect=AffineCombiningAE.for_mix(MIX, n_latent=16)[0])
    assert extra == {"note": "x"} and back.meta["merge"] == "safe"
    torch.testing.assert_close(back.reconstruction_weights(), ae.reconstruction_weights())
    assert {k: v.tolist() for k, v in back.index_map.items()} == {
        k: v.tolist() for k, v in ae.index_map.items()
    }

    other_mix = {k: v for k, v in MIX.items() if k != "syn_mpii"}
    with pytest.raises(AEFileError, match=r"another mix.*only in the file \['syn_mpii'\]"):
        load_ae(path, expect=AffineCombiningAE.for_mix(other_mix)[0])
    fewer = AffineCombiningAE(ae.joint_names[:-2], list(range(ae.n_joints - 2)))
    with pytest.raises(
        AEFileError, match=f"has {ae.n_joints} joints but the mix's union has {ae.n_joints - 2}"
    ):
        load_ae(path, expect=fewer)
    renamed = list(ae.joint_names)
    renamed[3] = "left_ear_typo"
    with pytest.raises(AEFileError, match="first at index 3: file 'left_ear' vs mix 'left_ear_typo'"):
        load_ae(path, expect={"joint_names": renamed})
    (tmp_path / "junk.pt").write_bytes(b"not a file")
    with pytest.raises(AEFileError, match="junk.pt: not a readable AE file"):
        load_ae(tmp_path / "junk.pt")
    with pytest.raises(AEFileError, match="not found"):
        load_ae(tmp_path / "missing.pt")


def test_one_ae_per_family_with_more_than_one_skeleton():
    aes = family_aes(MIX, n_latent=8)
    assert list(aes) == ["human"]  # the animals have one skeleton: nothing to bridge
    ae, idx = aes["human"]
    assert set(idx) == {"syn_coco", "syn_aic", "syn_mpii", "syn_wholebody"} and ae.n_latent == 8
    two_animals = family_aes({**MIX, "syn_animalpose": "animalpose"})
    assert set(two_animals) == {"human", "animal"}
    assert set(two_animals["animal"][1]) == {"syn_ap10k", "syn_animalpose"}
