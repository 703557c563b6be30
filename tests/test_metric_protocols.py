"""Known-answer tests of the official protocols (issue 9): every expected number is computed here by hand from
the OKS / PCK / NME definitions, never read back from the code under test.

Covers: COCO AP with a detection file that reaches images without people; zero-score predictions
(xtcocotools drops them); mmpose's OKS-NMS visiting order, soft OKS-NMS and NMS area = prod(scale);
AIC ``use_area=False``; COCO-WholeBody per-part AP; CrowdPose AP_easy/medium/hard; NME; torso PCK;
keypoint partitions; zero normalisers; and mmpose's own metric unit-test fixtures.
"""

from __future__ import annotations

import numpy as np
import pytest

from multipose.data.records import Instance
from multipose.evaluation import (
    auc,
    bbox_pck,
    build_evaluator,
    epe,
    nme,
    oks_nms,
    oks_nms_per_image,
    soft_oks_nms,
)
from multipose.evaluation.coco import CROWDPOSE_METRIC_NAMES
from multipose.skeletons.registry import get_skeleton

COCO = get_skeleton("coco")
AIC = get_skeleton("aic")
CROWD = get_skeleton("crowdpose")
WB = get_skeleton("coco_wholebody")
THRS = np.linspace(0.5, 0.95, 10)  # COCO OKS thresholds
REC = np.linspace(0.0, 1.0, 101)  # COCO recall thresholds


def person(skel, image_id, ann_id, x0=50.0, y0=40.0, w=100.0, h=200.0, area=None, seed=0, **kw):
    rng = np.random.default_rng(seed + ann_id)
    k = skel.num_keypoints
    kp = np.zeros((k, 3), np.float32)
    kp[:, 0] = x0 + rng.uniform(0, w, k)
    kp[:, 1] = y0 + rng.uniform(0, h, k)
    kp[:, 2] = 2
    inst = Instance(
        image_path=f"{image_id}.jpg",
        image_id=image_id,
        ann_id=ann_id,
        dataset="x",
        bbox=[x0, y0, w, h],
        keypoints=kp,
        area=0.6 * w * h if area is None else area,
    )
    for key, value in kw.items():
        setattr(inst, key, value)
    return inst


def pose(inst, shift=(0.0, 0.0), score=1.0):
    p = inst.keypoints.copy()
    p[:, 0] += shift[0]
    p[:, 1] += shift[1]
    p[:, 2] = score
    return p


def oks_of_shift(d: float, scale: float, sigmas, labelled=None) -> float:
    """OKS (COCO definition) of a prediction shifted by ``d`` px on every labelled joint."""
    sigmas = np.asarray(sigmas, np.float64)
    e = np.exp(-(d**2) / (2.0 * scale * (2.0 * sigmas) ** 2))
    return float(e[labelled].mean() if labelled is not None else e.mean())


def ap_single_match(oks: float) -> float:
    """AP when every ground truth has one prediction of the same OKS and nothing else is predicted."""
    return float(np.mean(THRS <= oks))


def coco_ap(oks_ranked, n_gt: int) -> float:
    """COCO AP by its definition for predictions in rank order, each with its OKS to the one ground truth it
    can match (no crowd, no ignored ground truth): at each OKS threshold, the precision envelope sampled at the
    101 recall points (0 beyond the highest recall), averaged over thresholds."""
    oks_ranked = np.asarray(oks_ranked, np.float64)
    aps = []
    for t in THRS:
        tp = np.cumsum(oks_ranked >= t)
        fp = np.cumsum(oks_ranked < t)
        rc, pr = tp / n_gt, tp / (tp + fp)
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        idx = np.searchsorted(rc, REC, side="left")
        aps.append(np.mean([pr[i] if i < len(pr) else 0.0 for i in idx]))
    return float(np.mean(aps))


def run(ev, insts, preds, bbox_scores=None, **kw):
    ev.update(
        np.stack(preds),
        image_ids=[i.image_id for i in insts],
        ann_ids=[i.ann_id for i in insts],
        bbox_scores=bbox_scores,
        **kw,
    )
    return ev.compute()


# ---------------------------------------------------------------------------------------------- item 2


def test_detections_on_images_without_people_are_false_positives():
    gt = [person(COCO, 1, 1)]
    # a detection file covers image 2 too, which has no annotated person
    stray = person(COCO, 2, 99)
    ev = build_evaluator("coco", "x", gt, COCO, image_ids=[1, 2], use_nms=False)
    m = run(ev, [gt[0], stray], [pose(gt[0]), pose(stray)], bbox_scores=[0.9, 0.95])
    # by hand: ranked [FP (0.95), TP (0.9)]: precision 0, 1/2; interpolated 1/2 at every recall <= 1
    assert m["AP"] == pytest.approx(0.5)
    assert m["AR"] == pytest.approx(1.0)
    # ranked below the true positive, the false positive costs nothing
    ev = build_evaluator("coco", "x", gt, COCO, image_ids=[1, 2], use_nms=False)
    assert run(ev, [gt[0], stray], [pose(gt[0]), pose(stray)], bbox_scores=[0.9, 0.5])["AP"] == pytest.approx(
        1.0
    )
    # without the image list the error says which option to set
    ev = build_evaluator("coco", "x", gt, COCO, use_nms=False)
    with pytest.raises(ValueError, match="image_ids"):
        run(ev, [gt[0], stray], [pose(gt[0]), pose(stray)])


# ---------------------------------------------------------------------------------------------- item 9


def test_predictions_without_keypoint_score_are_dropped_like_xtcocotools():
    gt = [person(COCO, i, i) for i in range(1, 5)]
    # GT-as-prediction, score_mode=bbox, no NMS; plus one pose far from everyone whose keypoint scores are 0
    empty = person(COCO, 1, 50, x0=2000.0, y0=2000.0)
    insts = [*gt, empty]
    preds = [pose(g) for g in gt] + [pose(empty, score=0.0)]
    scores = [0.9] * 4 + [0.95]
    opts = {"use_nms": False, "use_rescore": False}
    m_drop = run(build_evaluator("coco", "x", gt, COCO, **opts), insts, preds, scores)
    m_keep = run(build_evaluator("coco", "x", gt, COCO, drop_zero_score=False, **opts), insts, preds, scores)
    assert m_drop["AP"] == pytest.approx(1.0)
    # pycocotools: the 0.95 false positive ranks first; precision k/(k+1) at the k-th hit -> AP = 4/5
    assert m_keep["AP"] == pytest.approx(4 / 5)


def test_oks_nms_visits_equal_scores_in_mmpose_order():
    base = person(COCO, 1, 1, area=12000.0)
    near = [pose(base, shift=(s, 0.0)) for s in (6.0, 3.0, 0.0)]  # three copies of one person
    areas = np.full(3, 1e6)  # NMS scale: the copies overlap (OKS > 0.9) and only one survives
    scores = np.full(3, 0.8)
    keep = oks_nms(np.stack(near), scores, areas, COCO.sigmas, 0.9)
    # mmpose: order = scores.argsort()[::-1] -> the last of the tied poses is visited (and kept) first
    assert keep.tolist() == [int(scores.argsort()[::-1][0])] == [2]
    # the kept pose decides the AP: the exact one (index 2) gives AP 1, the first one would give less
    assert ap_single_match(oks_of_shift(6.0, 12000.0, COCO.sigmas)) < 0.9
    ev = build_evaluator("coco", "x", [base], COCO, use_rescore=False)
    m = run(ev, [base] * 3, near, bbox_scores=scores, sample_ids=[0, 1, 2], areas=areas)
    assert m["AP"] == pytest.approx(1.0)


def test_mmpose_nms_unit_fixture_and_soft_nms():
    # mmpose 0.x tests/test_post_processing/test_nms.py, re-run: two coincident poses and a far one
    k = np.stack(
        [
            np.tile([10.0, 10.0, 0.9], (17, 1)),
            np.tile([10.0, 10.0, 0.9], (17, 1)),
            np.tile([100.0, 100.0, 0.9], (17, 1)),
        ]
    )
    scores, areas = np.array([0.9, 0.4, 0.7]), np.full(3, 100.0)
    assert oks_nms(k, scores, areas, COCO.sigmas, 0.9).tolist() == [0, 2]
    assert soft_oks_nms(k, scores, areas, COCO.sigmas, 0.9).tolist() == [0, 2, 1]
    # by hand: OKS(0, 1) = 1 -> score 0.4 * exp(-1 / 0.9) = 0.132 < 0.7; max_dets cuts the tail
    assert soft_oks_nms(k, scores, areas, COCO.sigmas, 0.9, max_dets=2).tolist() == [0, 2]
    assert oks_nms_per_image(k, scores, areas, np.zeros(3), COCO.sigmas, 0.9, soft=True).tolist() == [0, 1, 2]


def test_nms_area_is_the_padded_box_area_from_scale():
    base = person(COCO, 1, 1, area=100.0)
    a, b = pose(base), pose(base, shift=(6.0, 0.0))
    # OKS(a, b) with scale s: mean_j exp(-36 / (2 s (2 sigma_j)^2)); small area -> far apart, box area -> same pose
    assert oks_of_shift(6.0, 100.0, COCO.sigmas) < 0.9 < oks_of_shift(6.0, 192.0 * 256.0, COCO.sigmas)
    scales = np.array([[192.0, 256.0], [192.0, 256.0]])
    ev = build_evaluator("coco", "x", [base], COCO)
    ev.update(
        np.stack([a, b]),
        image_ids=[1, 1],
        ann_ids=[1, 1],
        bbox_scores=[0.9, 0.8],
        areas=[100.0, 100.0],
        sample_ids=[0, 1],
        scales=scales,
    )
    kept, _, _ = ev.select(ev._deduplicated())
    assert len(kept) == 1  # suppressed with prod(scale) = 49152 px², kept with area 100
    ev.reset()
    ev.update(
        np.stack([a, b]),
        image_ids=[1, 1],
        ann_ids=[1, 1],
        bbox_scores=[0.9, 0.8],
        areas=[100.0, 100.0],
        sample_ids=[0, 1],
    )
    assert len(ev.select(ev._deduplicated())[0]) == 2


# ---------------------------------------------------------------------------------------------- item 5


def test_aic_oks_scale_is_053_box_area():
    w, h = 120.0, 240.0
    gt = [person(AIC, i, i, w=w, h=h, area=0.9 * w * h) for i in range(1, 4)]
    d = 3.0
    preds = [pose(g, shift=(d, 0.0)) for g in gt]
    by_box = oks_of_shift(d, 0.53 * w * h, AIC.sigmas)
    by_area = oks_of_shift(d, 0.9 * w * h, AIC.sigmas)
    assert ap_single_match(by_box) != ap_single_match(by_area)  # the case separates the two conventions
    m = run(build_evaluator("coco", "aic", gt, AIC, use_nms=False), gt, preds)  # protocol auto -> aic
    assert m["AP"] == pytest.approx(ap_single_match(by_box))
    m = run(build_evaluator("coco", "aic", gt, AIC, use_nms=False, use_area=True), gt, preds)
    assert m["AP"] == pytest.approx(ap_single_match(by_area))


def test_coco_wholebody_per_part_ap():
    sig = np.asarray(WB.sigmas, np.float64)
    gt = [person(WB, i, i) for i in range(1, 4)]
    gt[0].keypoints[91:112] = 0  # person 1 has no left-hand labels: ignored for AP_lefthand only
    area = gt[0].area
    d = 4.0
    preds = []
    for g in gt:
        p = pose(g)
        p[23:91, 0] += d  # the face is off by d px, everything else exact
        preds.append(p)
    m = run(build_evaluator("coco", "wb", gt, WB, use_nms=False), gt, preds)
    face = oks_of_shift(d, area, sig[23:91])
    assert m["AP_body"] == 1.0 and m["AP_foot"] == 1.0
    assert m["AP_lefthand"] == 1.0 and m["AP_righthand"] == 1.0
    assert m["AP_face"] == pytest.approx(ap_single_match(face))
    # whole body: OKS over the labelled joints of all 133 (person 1 has 112 labelled, the others 133)
    e = np.exp(-(d**2) / (2 * area * (2 * sig) ** 2))
    whole = [(133 - 68 + e[23:91].sum()) / 133, (112 - 68 + e[23:91].sum()) / 112]
    assert min(whole) < 0.95
    # equal scores rank the predictions by image id: person 1 (112 labelled) first
    assert m["AP"] == pytest.approx(coco_ap([whole[1], whole[0], whole[0]], 3))
    assert "AP_body" not in run(build_evaluator("coco", "wb", gt, WB, use_nms=False, parts={}), gt, preds)


def test_partition_ap_on_a_named_subset():
    gt = [person(COCO, i, i) for i in range(1, 3)]
    preds = [pose(g) for g in gt]
    for p in preds:
        p[11:, 0] += 30.0  # legs far off
    m = run(
        build_evaluator(
            "coco",
            "x",
            gt,
            COCO,
            use_nms=False,
            parts={
                "upper": ["0:11"],
                "legs": ["left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"],
            },
        ),
        gt,
        preds,
    )
    assert m["AP_upper"] == 1.0 and m["AP_legs"] == 0.0
    with pytest.raises(ValueError, match="neither a keypoint"):
        build_evaluator("coco", "x", gt, COCO, parts={"bad": ["tail"]})


# ---------------------------------------------------------------------------------------------- CrowdPose


def test_crowdpose_ap_easy_medium_hard():
    w, h = 100.0, 200.0
    d = 5.0
    ci = {1: 0.05, 2: 0.19, 3: 0.2, 4: 0.5, 5: 0.8, 6: 0.95}  # easy < 0.2 <= medium < 0.8 <= hard
    gt = [person(CROWD, i, i, w=w, h=h, crowd_index=c) for i, c in ci.items()]
    scored = [g for g in gt if g.image_id != 6]  # the hardest image gets no prediction at all
    preds = [pose(g, shift=(d, 0.0) if ci[g.image_id] >= 0.2 else (0.0, 0.0)) for g in scored]
    m = run(build_evaluator("coco", "crowd", gt, CROWD, use_nms=False), scored, preds)
    assert tuple(k for k in m if not k.startswith("PCK@")) == CROWDPOSE_METRIC_NAMES  # + box PCK
    oks = oks_of_shift(d, 0.53 * w * h, CROWD.sigmas)  # use_area=False: 0.53 w h
    assert m["AP_easy"] == 1.0
    assert m["AP_medium"] == pytest.approx(round(ap_single_match(oks), 4))
    # hard: 2 people, 1 found (OKS `oks`): at each threshold precision 1 up to recall 1/2 if matched
    hard = np.mean([(REC <= 0.5).mean() if oks >= t else 0.0 for t in THRS])
    assert m["AP_hard"] == pytest.approx(round(hard, 4))
    ev = build_evaluator("coco", "crowd", [person(CROWD, 1, 1)], CROWD)
    with pytest.raises(ValueError, match="crowdIndex"):
        ev.compute()


# ---------------------------------------------------------------------------------------------- item 10


def test_nme_known_answer_and_zero_normaliser():
    gt = [person(COCO, i, i) for i in range(1, 4)]
    gt[2].keypoints[1, :2] = gt[2].keypoints[2, :2]  # eyes on top of each other: normaliser 0
    preds = [pose(g, shift=(3.0, 4.0)) for g in gt]  # 5 px everywhere
    m = run(build_evaluator("nme", "x", gt, COCO, norm_joints=["left_eye", "right_eye"]), gt, preds)
    iod = [float(np.linalg.norm(g.keypoints[1, :2] - g.keypoints[2, :2])) for g in gt[:2]]
    assert m["NME"] == pytest.approx(np.mean([5.0 / iod[0], 5.0 / iod[1]]), rel=1e-5)
    assert m["skipped_instances"] == 1.0
    m = run(build_evaluator("nme", "x", gt, COCO, norm="bbox"), gt, preds)
    assert m["NME"] == pytest.approx(5.0 / 200.0, rel=1e-5)  # longer box side 200
    with pytest.raises(ValueError, match="norm_joints"):
        build_evaluator("nme", "x", gt, COCO)


def test_torso_pck_and_pck_partitions():
    gt = [person(COCO, 1, 1)]
    g = gt[0].keypoints
    torso = float(np.linalg.norm(g[5, :2] - g[12, :2]))  # left shoulder - right hip (mmpose / JHMDB)
    p = pose(gt[0])
    p[0, 0] += 0.19 * torso  # correct at 0.2
    p[1, 0] += 0.21 * torso  # wrong at 0.2
    p[11:, 1] += 1000.0  # legs wrong (the torso uses the ground truth's hip, not the prediction's)
    m = run(
        build_evaluator("pck", "x", gt, COCO, norm="torso", parts={"legs": ["11:17"], "head": ["0:5"]}),
        gt,
        [p],
    )
    assert m["PCK@0.2"] == pytest.approx(10 / 17)
    assert m["PCK@0.2/legs"] == 0.0 and m["PCK@0.2/head"] == pytest.approx(4 / 5)
    # a ground-truth torso shorter than 1 px falls back to the predicted torso (mmpose warns and does so)
    gt[0].keypoints[12, :2] = gt[0].keypoints[5, :2]
    q = pose(gt[0])
    q[12, 0] += 50.0
    q[0, 0] += 0.19 * 50.0
    q[1, 0] += 0.21 * 50.0
    assert run(build_evaluator("pck", "x", gt, COCO, norm="torso"), gt, [q])["PCK@0.2"] == pytest.approx(
        15 / 17
    )  # joint 1 and the moved hip are wrong


def test_pck_instance_with_zero_box_is_skipped_and_counted():
    gt = [person(COCO, 1, 1), person(COCO, 2, 2, w=0.0, h=0.0)]
    gt[1].keypoints[:, :2] = 0.0
    m = run(build_evaluator("pck", "x", gt, COCO), gt, [pose(gt[0]), pose(gt[1], shift=(50.0, 0.0))])
    assert m["PCK@0.2"] == 1.0 and m["skipped_instances"] == 1.0


def test_mmpose_functional_unit_fixtures():
    """mmpose's own keypoint_eval unit tests (pck / auc / epe / nme fixtures) give mmpose's numbers here."""
    out, tgt = np.zeros((2, 5, 2)), np.zeros((2, 5, 2))
    mask = np.array([[True, True, False, True, True]] * 2)
    out[0, 0], tgt[0, 0] = [10, 0], [10, 0]
    out[0, 1], tgt[0, 1] = [20, 20], [10, 10]
    out[0, 2], tgt[0, 2] = [0, 0], [-1, 0]
    out[0, 3], tgt[0, 3] = [30, 30], [30, 30]
    out[0, 4], tgt[0, 4] = [0, 10], [0, 10]
    r = bbox_pck(out, tgt, mask, np.array([10.0, 10.0]), 0.5)
    np.testing.assert_allclose(np.nan_to_num(r.per_joint, nan=-1), [1, 0.5, -1, 1, 1])
    assert r.mean == pytest.approx(0.875)
    r = bbox_pck(out, tgt, mask, np.zeros(2), 0.5)  # every normaliser 0: nothing counted
    assert r.mean == 0.0 and r.skipped == 2
    r = bbox_pck(out, tgt, mask, np.array([0.0, 10.0]), 0.5)
    assert r.mean == pytest.approx(1.0) and r.skipped == 1

    out, tgt, mask = np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), np.array([[True, True, False, True, True]])
    out[0, 0], tgt[0, 0] = [10, 4], [10, 0]
    out[0, 1], tgt[0, 1] = [10, 18], [10, 10]
    out[0, 2], tgt[0, 2] = [0, 0], [-1, -1]
    out[0, 3], tgt[0, 3] = [40, 40], [30, 30]
    out[0, 4], tgt[0, 4] = [20, 10], [0, 10]
    assert epe(out, tgt, mask) == pytest.approx(11.5355339, abs=1e-4)
    assert nme(out, tgt, mask, np.ones(1))[0] == pytest.approx(11.5355339, abs=1e-4)
    tgt[0, 2] = [0, -1]
    assert auc(out, tgt, mask, 20.0, 4) == pytest.approx(0.375, abs=1e-4)


def test_data_entry_metric_options_are_checked_when_the_config_is_read(tmp_path):
    from multipose.data.config import DataConfigError, parse_entry

    split = {"ann_file": "a.json", "img_dir": "img"}
    raw = {"format": "coco", "skeleton": "coco", "metric": "pck", "train": split, "val": split}
    entry = parse_entry("hands", {**raw, "metric_options": {"norm": "torso", "thrs": [0.2]}}, str(tmp_path))
    assert entry.metric_options == {"norm": "torso", "thrs": [0.2]}
    assert parse_entry("hands", raw, str(tmp_path)).metric_options == {}
    with pytest.raises(
        DataConfigError, match=r"datasets.hands.metric_options: .*\['protocol'\].*valid options"
    ):
        parse_entry("hands", {**raw, "metric_options": {"protocol": "aic"}}, str(tmp_path))
