"""MDPN multi-branch voting (multipose.bridges.voting): known answers, bit-identical copies, flip-back
commutation, and why approximately corresponding joints (different hip definitions) must not be averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multipose.bridges import compatible_heads, vote, vote_coords, vote_heatmaps, vote_sources
from multipose.data.codecs import build_codec
from multipose.skeletons import get_skeleton

SKELETONS = {"syn_coco": "coco", "syn_mpii": "mpii", "syn_aic": "aic"}
COCO, MPII, AIC = (get_skeleton(s) for s in ("coco", "mpii", "aic"))


def _random_heatmaps(seed: int, shape=(2, 16, 12)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, h, w = shape
    return {d: torch.rand(b, get_skeleton(s).num_keypoints, h, w, generator=g) for d, s in SKELETONS.items()}


def test_two_peaks_closer_than_sigma_average_to_the_midpoint():
    codec = build_codec("udp", (256, 192), (64, 48), sigma=2.0)
    coco = np.zeros((COCO.num_keypoints, 3))
    mpii = np.zeros((MPII.num_keypoints, 3))
    knee_c, knee_m = COCO.index("left_knee"), MPII.index("left_knee")
    coco[knee_c] = (100.0, 150.0, 2)
    mpii[knee_m] = (106.0, 153.0, 2)  # 1.5 and 0.75 heatmap px away: closer than sigma = 2 px
    heatmaps = {
        "syn_coco": torch.from_numpy(codec.encode(coco)[0])[None],
        "syn_mpii": torch.from_numpy(codec.encode(mpii)[0])[None],
    }
    voted = vote_heatmaps("syn_coco", heatmaps, SKELETONS, "average")
    assert voted.shape == (1, COCO.num_keypoints, 64, 48)
    xy, score = codec.decode(voted)
    assert xy[0, knee_c] == pytest.approx([103.0, 151.5], abs=0.1)  # 0.025 heatmap px
    assert score[0, knee_c] < 1.0  # one peak of two half-height Gaussians, not a copy of either
    own, _ = codec.decode(heatmaps["syn_coco"])
    assert own[0, knee_c] == pytest.approx([100.0, 150.0], abs=0.05)


def test_joints_without_counterpart_are_bit_identical_and_shared_ones_are_the_mean():
    heatmaps = _random_heatmaps(0)
    voted = vote_heatmaps("syn_coco", heatmaps, SKELETONS, "average")
    safe_tags = {
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    }
    for j, tag in enumerate(COCO.semantic):
        own = heatmaps["syn_coco"][:, j]
        if tag in safe_tags:  # every human skeleton has them: mean of three heads
            expect = (
                own
                + heatmaps["syn_mpii"][:, MPII.find_semantic(tag)]
                + heatmaps["syn_aic"][:, AIC.find_semantic(tag)]
            ) / 3
            torch.testing.assert_close(voted[:, j], expect)
            assert not torch.equal(voted[:, j], own)
        else:  # face points (no counterpart) and approx joints (hips, shoulders): the head's own output
            assert torch.equal(voted[:, j], own), tag
    # fill with the target's own head is the identity
    assert torch.equal(vote_heatmaps("syn_coco", heatmaps, SKELETONS, "fill"), heatmaps["syn_coco"])


def test_fill_takes_missing_joints_from_another_head():
    """MDPN's method A: the target skeleton (MPII here) from a primary head of another skeleton (COCO), the joints
    COCO lacks from the AIC head; joints no head has stay zero."""
    heatmaps = _random_heatmaps(1)
    del heatmaps["syn_mpii"]
    voted = vote_heatmaps("syn_mpii", heatmaps, SKELETONS, "fill", primary="syn_coco")
    assert voted.shape[1] == MPII.num_keypoints
    for j, tag in enumerate(MPII.semantic):
        if COCO.find_semantic(tag) is not None:
            assert torch.equal(voted[:, j], heatmaps["syn_coco"][:, COCO.find_semantic(tag)]), tag
        elif AIC.find_semantic(tag) is not None:  # head_top
            assert torch.equal(voted[:, j], heatmaps["syn_aic"][:, AIC.find_semantic(tag)]), tag
        else:  # pelvis, thorax, upper_neck: no head predicts them
            assert not voted[:, j].any(), tag
    assert {tag for j, tag in enumerate(MPII.semantic) if not voted[:, j].any()} == {
        "pelvis",
        "thorax",
        "upper_neck",
    }


@pytest.mark.parametrize("codec_name", ["msra", "udp"])
@pytest.mark.parametrize("method", ["fill", "average"])
def test_voting_commutes_with_flip_back(codec_name, method):
    codec = build_codec(codec_name, (64, 48), (16, 12))
    plain, flipped = _random_heatmaps(2), _random_heatmaps(3)
    skel = {d: get_skeleton(s) for d, s in SKELETONS.items()}
    flip_avg = {d: 0.5 * (plain[d] + codec.flip_back(flipped[d], skel[d].flip_indices)) for d in plain}
    first_flip = vote_heatmaps("syn_coco", flip_avg, SKELETONS, method)
    voted_flipped = vote_heatmaps("syn_coco", flipped, SKELETONS, method)
    first_vote = 0.5 * (
        vote_heatmaps("syn_coco", plain, SKELETONS, method)
        + codec.flip_back(voted_flipped, COCO.flip_indices)
    )
    torch.testing.assert_close(first_flip, first_vote, rtol=0, atol=1e-6)


def test_vote_coords_score_weighted_and_plain():
    coords = {"syn_coco": np.zeros((1, 17, 3), np.float32), "syn_mpii": np.zeros((1, 16, 3), np.float32)}
    kc, km = COCO.index("left_wrist"), MPII.index("left_wrist")
    coords["syn_coco"][0, kc] = (10.0, 20.0, 1.0)
    coords["syn_mpii"][0, km] = (13.0, 26.0, 2.0)
    coords["syn_coco"][0, 0] = (5.0, 6.0, 0.7)  # nose: no counterpart
    weighted = vote_coords("syn_coco", coords, SKELETONS, "average")
    assert weighted[0, kc] == pytest.approx([12.0, 24.0, 1.5])  # (10*1 + 13*2) / 3; score = plain mean
    plain = vote_coords("syn_coco", coords, SKELETONS, "average", weighting="plain")
    assert plain[0, kc] == pytest.approx([11.5, 23.0, 1.5])
    assert np.array_equal(weighted[0, 0], coords["syn_coco"][0, 0])
    coords["syn_coco"][0, kc, 2] = coords["syn_mpii"][0, km, 2] = 0.0  # no confidence anywhere: plain mean
    assert vote_coords("syn_coco", coords, SKELETONS, "average")[0, kc] == pytest.approx([11.5, 23.0, 0.0])


def _figures(n: int, seed: int = 0):
    """COCO and MPII ground truth of ``n`` synthetic humans (the world's hidden landmarks), in pixels."""
    from multipose.data.synthetic.figures import HumanStyle, sample_human
    from multipose.data.synthetic.views import get_view

    rng = np.random.default_rng(seed)
    grey = (128.0, 128.0, 128.0)
    views = {d: get_view(s) for d, s in (("syn_coco", "coco"), ("syn_mpii", "mpii"))}
    gt = {d: [] for d in views}
    for _ in range(n):
        fig = sample_human(rng, HumanStyle(grey, grey, grey, grey, grey, True))
        fig = fig.place((200.0, 200.0), scale=rng.uniform(150, 250), rotation=rng.uniform(-0.3, 0.3))
        for d, view in views.items():
            gt[d].append([fig.landmarks[lm] for lm in view.landmarks])
    return {d: np.asarray(v, dtype=np.float64) for d, v in gt.items()}


def test_averaging_approximately_corresponding_joints_hurts():
    """Two heads that each predict their own skeleton's ground truth with independent noise. Averaging a joint
    both define the same way (knees) reduces the error against the COCO ground truth; averaging the hips, which
    COCO and MPII place differently, increases it — which is why ``average`` leaves ``vote: approx`` tags alone."""
    gt = _figures(200)
    rng = np.random.default_rng(1)
    preds = {}
    for d, xy in gt.items():
        noisy = xy + rng.normal(0, 2.0, xy.shape)
        preds[d] = np.concatenate([noisy, np.ones(xy.shape[:2] + (1,))], axis=-1)
    careless = vote_coords("syn_coco", preds, SKELETONS, "average", safe_only=False, weighting="plain")
    careful = vote_coords("syn_coco", preds, SKELETONS, "average", weighting="plain")

    def error(pred, tag):
        j = COCO.find_semantic(tag)
        return float(np.linalg.norm(pred[:, j, :2] - gt["syn_coco"][:, j], axis=-1).mean())

    for tag in ("left_hip", "right_hip"):
        offset = np.linalg.norm(
            gt["syn_mpii"][:, MPII.find_semantic(tag)] - gt["syn_coco"][:, COCO.find_semantic(tag)], axis=-1
        )
        assert offset.mean() > 3.0  # the two datasets' hips really differ (pixels)
        assert error(careless, tag) > 1.2 * error(preds["syn_coco"], tag), tag  # averaging hurts
        assert error(careful, tag) == error(preds["syn_coco"], tag)  # the default leaves them alone
    for tag in ("left_knee", "right_knee"):
        assert error(careful, tag) < 0.85 * error(preds["syn_coco"], tag), tag  # averaging helps


def test_bad_input_is_named():
    heatmaps = _random_heatmaps(4)
    with pytest.raises(ValueError, match="voting method 'vote' is unknown"):
        vote_heatmaps("syn_coco", heatmaps, SKELETONS, "vote")
    heatmaps["syn_mpii"] = heatmaps["syn_mpii"][..., :6]
    with pytest.raises(ValueError, match="'syn_mpii'.*use vote_coords"):
        vote_heatmaps("syn_coco", heatmaps, SKELETONS, "average")
    with pytest.raises(ValueError, match="no skeleton given for \\['syn_x'\\]"):
        vote_sources("syn_x", ["syn_coco"], SKELETONS, "fill", primary="syn_coco")


def test_compatible_heads_need_the_same_codec_and_size():
    codecs = {
        "syn_coco": build_codec("udp", (256, 192), (64, 48)),
        "syn_mpii": build_codec("udp", (256, 192), (64, 48)),
        "syn_aic": build_codec("msra", (256, 192), (64, 48)),
    }
    shapes = {"syn_coco": (1, 17, 64, 48), "syn_mpii": (1, 16, 64, 48), "syn_aic": (1, 14, 64, 48)}
    assert compatible_heads("syn_coco", codecs, shapes) == ["syn_coco", "syn_mpii"]
    assert compatible_heads("syn_coco", codecs, {**shapes, "syn_mpii": (1, 16, 32, 24)}) == ["syn_coco"]


def _decoder(codec):
    def decode(heatmaps):
        xy, score = codec.decode(heatmaps)
        return np.concatenate([xy, score[..., None]], axis=-1)

    return decode


def test_vote_picks_heatmaps_for_shared_codecs_and_coordinates_otherwise():
    udp = build_codec("udp", (64, 48), (16, 12))
    msra = build_codec("msra", (64, 48), (16, 12))
    heatmaps = _random_heatmaps(5)
    same = {d: udp for d in SKELETONS}
    coords = {d: _decoder(same[d])(h) for d, h in heatmaps.items()}
    out = vote("syn_coco", heatmaps, coords, SKELETONS, same, "average", decode=_decoder(udp))
    # every head shares the codec: exactly "average the heatmaps, decode once"
    expect = _decoder(udp)(vote_heatmaps("syn_coco", heatmaps, SKELETONS, "average"))
    np.testing.assert_array_equal(out, expect)
    # the AIC head has another codec: joints it shares vote with coordinates, the rest as before
    mixed = {**same, "syn_aic": msra}
    coords["syn_aic"] = _decoder(msra)(heatmaps["syn_aic"])
    out = vote("syn_coco", heatmaps, coords, SKELETONS, mixed, "average", decode=_decoder(udp))
    by_coords = vote_coords("syn_coco", coords, SKELETONS, "average")
    sources = vote_sources("syn_coco", list(SKELETONS), SKELETONS, "average")
    with_aic = [j for j, src in enumerate(sources) if len(src) > 1 and "syn_aic" in dict(src)]
    assert len(with_aic) == 8  # elbows, wrists, knees, ankles
    for j in range(COCO.num_keypoints):
        np.testing.assert_array_equal(out[:, j], by_coords[:, j] if j in with_aic else expect[:, j])
    assert np.array_equal(out[:, 0], coords["syn_coco"][:, 0])  # nose: the head's own decoded keypoint


# ------------------------------------------------------------------------------------ wired into validation
@pytest.mark.parametrize("method", ["fill", "average"])
def test_validation_scores_voted_keypoints_next_to_the_heads_own(tiny_world, tmp_path, method):
    """``evaluation.voting`` adds ``val/<ds>/vote/<metric>`` beside the head's own metrics; ``fill`` keeps every
    joint the dataset's own head has, so its scores equal the head's own exactly; ``val/score`` never uses the
    voted numbers."""
    import hydra
    import lightning as L

    from conftest import compose
    from multipose.lit_module import PoseLitModule
    from multipose.train import build_model_config

    cfg = compose("train", [f"data.root={tiny_world}", "data.num_workers=0", "data.synthetic.config=tiny"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    torch.manual_seed(0)
    module = PoseLitModule(
        build_model_config(cfg, dm),
        evaluation={"flip_test": True, "voting": method, "cross_skeleton": False},
        mix=dm.describe(),
    )
    for p in module.model.heads.parameters():  # non-trivial heatmaps from an untrained model
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.3)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2,
        default_root_dir=tmp_path,  # results files go to <root>/results, never into the working directory
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    m = module.val_metrics
    for name in dm.dataset_names:
        prefix, vote_prefix = f"val/{name}/", f"val/{name}/vote/"
        evaluator_keys = set(module.evaluation.evaluators[name].compute(None))  # the own head's metric keys
        own = {
            k[len(prefix) :]: v
            for k, v in m.items()
            if k.startswith(prefix) and k[len(prefix) :] in evaluator_keys
        }
        vote = {k[len(vote_prefix) :]: v for k, v in m.items() if k.startswith(vote_prefix)}
        assert own and set(vote) == set(own), name
        if method == "fill":
            assert vote == own, name
    if method == "average":  # other heads with exactly corresponding joints move the voted keypoints
        batch = next(iter(dm.val_dataloader()[0]))
        preds = module.predictor.predict_batch(batch, "syn_coco", module.evaluation.heads_for("syn_coco"))
        voted = module.predictor.vote(preds, "syn_coco", "average", batch)
        moved = np.abs(voted[..., :2] - preds["syn_coco"].keypoints[..., :2]).max(axis=(0, 2)) > 1e-3
        assert 0 < moved.sum() < voted.shape[1]  # some joints averaged, others (no exact counterpart) kept
    assert not any("vote" in k for k in m if k == "val/score")
