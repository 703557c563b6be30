"""Tests for multipose.evaluation: COCO AP, OKS-NMS, rescoring, PCKh/PCK/AUC/EPE, cross-skeleton."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from multipose.data.records import Instance
from multipose.evaluation import (
    CrossSkeletonEvaluator,
    auc,
    bbox_pck,
    build_evaluator,
    epe,
    keypoint_oks,
    oks_iou,
    oks_nms,
    oks_nms_per_image,
    pckh,
    rescore,
)
from multipose.skeletons.registry import get_skeleton

COCO = get_skeleton("coco")
AIC = get_skeleton("aic")
MPII = get_skeleton("mpii")
HAND = get_skeleton("onehand10k")
COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)

# (w, h) of the boxes; area = 0.6 * w * h: 60x100 -> 3600 px² (COCO "medium"), 150x250 -> 22500 ("large")
SIZES = [(60.0, 100.0), (150.0, 250.0)]


def make_gt(
    skeleton,
    n_images: int = 3,
    per_image: int = 2,
    seed: int = 0,
    all_labelled: bool = False,
    sizes=SIZES,
    with_crowd: bool = True,
    dataset: str = "syn",
):
    """Ground truth: people 600 px apart (never confusable); ann ids start at 0 on purpose."""
    rng = np.random.default_rng(seed)
    k = skeleton.num_keypoints
    out, ann = [], 0
    for img in range(n_images):
        for p in range(per_image):
            w, h = sizes[(img * per_image + p) % len(sizes)]
            x0, y0 = 50.0 + 600.0 * p, 40.0
            kp = np.zeros((k, 3), np.float32)
            kp[:, 0] = x0 + rng.uniform(0, w, k)
            kp[:, 1] = y0 + rng.uniform(0, h, k)
            kp[:, 2] = 2
            if not all_labelled:
                kp[0] = 0  # unlabelled joint: COCO stores (0, 0, 0)
                kp[1, 2] = 1  # labelled but occluded
            out.append(
                Instance(
                    image_path=f"images/{img:03d}.jpg",
                    image_id=100 + img,
                    ann_id=ann,
                    dataset=dataset,
                    bbox=np.array([x0, y0, w, h], np.float32),
                    keypoints=kp,
                    area=0.6 * w * h,
                )
            )
            ann += 1
    if with_crowd:
        out.append(
            Instance(
                image_path="images/000.jpg",
                image_id=100,
                ann_id=ann,
                dataset=dataset,
                bbox=np.array([1500.0, 40.0, 200.0, 200.0], np.float32),
                keypoints=np.zeros((k, 3), np.float32),
                area=30000.0,
                iscrowd=True,
            )
        )
    return out


def non_crowd(instances):
    return [i for i in instances if not i.iscrowd]


def preds_from(instances, shift=(0.0, 0.0), score: float = 1.0) -> np.ndarray:
    p = np.stack([i.keypoints.copy() for i in instances]).astype(np.float32)
    p[..., 0] += shift[0]
    p[..., 1] += shift[1]
    p[..., 2] = score
    return p


def feed(ev, instances, preds, batch: int = 2, **extra) -> None:
    for s in range(0, len(instances), batch):
        chunk = instances[s : s + batch]
        ev.update(
            preds[s : s + batch],
            image_ids=np.array([i.image_id for i in chunk]),
            ann_ids=np.array([i.ann_id for i in chunk]),
            bbox_scores=np.array([i.score for i in chunk], np.float32),
            areas=np.array([i.bbox[2] * i.bbox[3] for i in chunk], np.float32),
            **extra,
        )


def analytic_oks(d: float, area: float, sigmas: np.ndarray) -> float:
    """OKS of a uniform shift by d px: mean_j exp(-d² / (2 s² k_j²)), s² = area, k = 2 sigma."""
    kappa = 2.0 * np.asarray(sigmas, np.float64)
    return float(np.mean(np.exp(-(d**2) / (2.0 * area * kappa**2))))


def shift_for_oks(target: float, area: float, sigmas: np.ndarray) -> float:
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if analytic_oks(mid, area, sigmas) > target else (lo, mid)
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- COCO AP


@pytest.mark.parametrize("skeleton", [COCO, AIC], ids=lambda s: f"{s.name}-K{s.num_keypoints}")
def test_ground_truth_as_predictions_gives_ap_one(skeleton, tmp_path):
    gt = make_gt(skeleton)
    ev = build_evaluator("coco", "syn_x", gt, skeleton)
    people = non_crowd(gt)
    feed(ev, people, preds_from(people))
    m = ev.compute(tmp_path)
    for key in ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"):
        assert isinstance(m[key], float)
        assert m[key] == pytest.approx(1.0), key
    assert "Average Precision" in ev.last_summary

    path = tmp_path / "results_syn_x.json"
    results = json.loads(path.read_text())
    assert len(results) == len(people)
    assert {tuple(sorted(r)) for r in results} == {("category_id", "image_id", "keypoints", "score")}
    assert all(len(r["keypoints"]) == 3 * skeleton.num_keypoints for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results_syn_x.json"]  # no temp file left over


@pytest.mark.parametrize("skeleton", [COCO, AIC], ids=lambda s: s.name)
@pytest.mark.parametrize("target", [0.625, 0.725, 0.875])
def test_uniform_shift_lowers_ap_as_oks_predicts(skeleton, target):
    area = 0.6 * 150.0 * 250.0
    gt = make_gt(skeleton, all_labelled=True, sizes=[(150.0, 250.0)], with_crowd=False)
    d = shift_for_oks(target, area, skeleton.sigmas)
    oks = analytic_oks(d, area, skeleton.sigmas)
    # the shift is designed so that the OKS lies strictly between two COCO thresholds
    assert np.min(np.abs(COCO_THRESHOLDS - oks)) > 0.01

    # the library's OKS agrees with the analytic value
    pred = preds_from(gt, shift=(d, 0.0))
    got = keypoint_oks(
        pred, np.stack([i.keypoints for i in gt]), np.array([i.area for i in gt]), skeleton.sigmas
    )
    np.testing.assert_allclose(got, oks, rtol=1e-4)  # float32 keypoints

    ev = build_evaluator("coco", "syn", gt, skeleton, protocol="coco")  # OKS scale = the annotation area
    feed(ev, gt, pred)
    m = ev.compute()
    expected_ap = float(np.mean(COCO_THRESHOLDS <= oks))
    assert m["AP"] == pytest.approx(expected_ap)
    assert m["AR"] == pytest.approx(expected_ap)
    assert m["AP50"] == 1.0
    assert m["AP75"] == (1.0 if oks > 0.75 else 0.0)
    assert m["APM"] == -1.0  # COCO convention: no medium-sized ground truth
    if 0.5 < oks < 0.75:
        assert m["AP75"] == 0.0


def test_coco_evaluator_reports_box_pck_beside_ap():
    """PCK@0.1 of ground-truth-box predictions: a joint counts when its error is under 0.1 x the box's longer
    side (250 px here); unlabelled joints are left out; off with pck_thr=None and for detections."""
    gt = make_gt(COCO, sizes=[(150.0, 250.0)], with_crowd=False)  # joint 0 unlabelled, joint 1 occluded
    pred = preds_from(gt)
    pred[:, 2:9, 0] += 24.0  # 7 labelled joints just inside 25 px
    pred[:, 9:13, 1] += 26.0  # 4 labelled joints just outside
    ev = build_evaluator("coco", "syn", gt, COCO)
    feed(ev, gt, pred)
    assert ev.compute()["PCK@0.1"] == pytest.approx(12.0 / 16.0)  # 16 labelled joints, 4 misses
    off = build_evaluator("coco", "syn", gt, COCO, pck_thr=None)
    feed(off, gt, pred)
    assert "PCK@0.1" not in off.compute()
    det = build_evaluator("coco", "syn", gt, COCO)
    det.update(
        pred,
        image_ids=np.array([i.image_id for i in gt]),
        ann_ids=np.array([i.ann_id + 1000 for i in gt]),  # not ground-truth instances: detections
        bbox_scores=np.ones(len(gt), np.float32),
        areas=np.array([i.bbox[2] * i.bbox[3] for i in gt], np.float32),
    )
    assert "PCK@0.1" not in det.compute()


def test_empty_predictions_give_zero_ap_and_empty_gt_is_an_error():
    gt = make_gt(COCO)
    m = build_evaluator("coco", "syn", gt, COCO).compute()
    assert m["AP"] == 0.0 and m["AR"] == 0.0
    with pytest.raises(ValueError, match="no ground-truth"):
        build_evaluator("coco", "syn", [], COCO)


def test_detection_records_are_not_ground_truth():
    gt = make_gt(COCO, with_crowd=False)
    gt[0].ann_id = -1
    with pytest.raises(ValueError, match="detection"):
        build_evaluator("coco", "syn", gt, COCO)


def test_update_rejects_padded_or_wrong_keypoint_count():
    gt = make_gt(COCO, with_crowd=False)
    ev = build_evaluator("coco", "syn", gt, COCO)
    with pytest.raises(ValueError, match="slice"):
        ev.update(np.zeros((2, 21, 3)), image_ids=[100, 100])
    with pytest.raises(ValueError, match="ann_ids"):
        ev.update(np.zeros((2, 17, 3)), image_ids=[100, 100], ann_ids=[0])


def test_oks_nms_in_evaluator_removes_a_duplicate_detection():
    """A higher-scored near-copy of a person is a false positive unless OKS-NMS removes the copy."""
    gt = make_gt(COCO, with_crowd=False)
    pred = preds_from(gt)
    dup = pred[:1].copy()
    dup[..., 0] += 0.5
    kpts = np.concatenate([pred, dup])
    image_ids = np.array([i.image_id for i in gt] + [gt[0].image_id])
    box_scores = np.array([0.9] * len(gt) + [0.95], np.float32)
    areas = np.array([i.bbox[2] * i.bbox[3] for i in gt] + [gt[0].bbox[2] * gt[0].bbox[3]], np.float32)

    def run(use_nms: bool) -> dict:
        ev = build_evaluator("coco", "syn", gt, COCO, use_nms=use_nms)
        ev.update(
            kpts, image_ids=image_ids, ann_ids=np.full(len(kpts), -1), bbox_scores=box_scores, areas=areas
        )
        return ev.compute()

    assert run(use_nms=False)["AP"] < 0.99
    assert run(use_nms=True)["AP"] == pytest.approx(1.0)


def test_repeated_predictions_are_dropped():
    gt = make_gt(COCO, with_crowd=False)
    ev = build_evaluator("coco", "syn", gt, COCO, use_nms=False)
    pred = preds_from(gt)
    feed(ev, gt, pred)
    feed(ev, gt[:3], pred[:3])  # DistributedSampler padding repeats samples
    assert len(ev) == len(gt) + 3
    assert ev.compute()["AP"] == pytest.approx(1.0)  # repeats would otherwise be false positives


def test_merge_replaces_state_and_keeps_first_occurrence():
    gt = make_gt(HAND, n_images=3, per_image=2, with_crowd=False)
    exact = preds_from(gt)
    bad = exact.copy()
    bad[..., :2] += 40.0
    ev = build_evaluator("pck", "hand", gt, HAND)
    feed(ev, gt[:4], exact[:4])
    state_a = ev.state()
    ev.reset()
    feed(ev, gt[3:4], bad[3:4])
    feed(ev, gt[4:], exact[4:])
    state_b = ev.state()
    assert set(state_a) == {"preds", "image_ids", "ann_ids", "bbox_scores", "areas", "sample_ids"}

    ev.merge([state_a, state_b])  # replaces this rank's accumulation by the gathered one
    assert len(ev) == 7
    m = ev.compute()
    assert m["EPE"] == pytest.approx(0.0) and m["PCK@0.2"] == 1.0

    ev.merge([state_b, state_a])  # the other order keeps the bad copy of ann 3
    assert ev.compute()["EPE"] == pytest.approx(40.0 * np.sqrt(2) / 6, rel=1e-5)


def test_sample_ids_take_precedence_over_ann_ids():
    gt = make_gt(HAND, with_crowd=False)
    ev = build_evaluator("pck", "hand", gt, HAND)
    p = preds_from(gt)
    ev.update(p[:2], image_ids=[gt[0].image_id] * 2, ann_ids=[gt[0].ann_id] * 2, sample_ids=[0, 1])
    # different samples that share an annotation (e.g. two crops) are both kept
    assert ev._deduplicated()["preds"].shape[0] == 2


# ----------------------------------------------------------------------------- OKS / NMS / rescoring


def test_oks_iou_matches_formula_and_nms_keeps_distinct_people():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.uniform(0, 100, (17, 2)), np.ones((17, 1))], 1)
    b = a.copy()
    b[:, :2] += 300.0  # another person
    a2 = a.copy()
    a2[:, 0] += 0.5  # near-duplicate of a
    area = 10000.0
    np.testing.assert_allclose(
        oks_iou(a, a2[None], area, [area], COCO.sigmas), analytic_oks(0.5, area, COCO.sigmas)
    )
    kpts = np.stack([a, b, a2])
    kept = oks_nms(kpts, np.array([0.8, 0.7, 0.9]), np.full(3, area), COCO.sigmas, thr=0.9)
    assert kept.tolist() == [2, 1]  # a2 (best) suppresses a, b survives
    kept_all = oks_nms(kpts, np.array([0.8, 0.7, 0.9]), np.full(3, area), COCO.sigmas, thr=0.999999)
    assert kept_all.tolist() == [2, 0, 1]


def test_oks_iou_vis_thr_uses_confident_keypoints_only():
    a = np.zeros((3, 3))
    a[:, 2] = [0.9, 0.9, 0.1]
    b = a.copy()
    b[2, 0] = 1000.0  # far off, but its score is below vis_thr in a
    sig = np.array([0.05, 0.05, 0.05])
    assert oks_iou(a, b[None], 100.0, [100.0], sig, vis_thr=0.2)[0] == pytest.approx(1.0)
    assert oks_iou(a, b[None], 100.0, [100.0], sig)[0] == pytest.approx(2.0 / 3.0)


def test_rescore_formula():
    ks = np.array([[0.9, 0.1, 0.5, 0.2], [0.1, 0.2, 0.05, 0.0]])
    got = rescore(ks, np.array([0.8, 0.7]), vis_thr=0.2)
    # mean of scores strictly above 0.2 is (0.9 + 0.5) / 2; none above -> keypoint factor 0
    np.testing.assert_allclose(got, [0.8 * 0.7, 0.0])


# ----------------------------------------------------------------------------- PCKh / PCK / AUC / EPE


def test_pckh_hand_made_case():
    gt = np.zeros((2, 4, 2))
    pred = np.zeros((2, 4, 2))
    pred[0, 0] = [4.9, 0.0]  # 0.49 head -> correct at 0.5
    pred[0, 1] = [0.0, 5.1]  # 0.51 head -> wrong
    pred[0, 2] = [100.0, 0.0]  # unlabelled -> ignored
    pred[1, 0] = [3.0, 4.0]  # 0.5 head exactly -> correct (MPII uses <=)
    vis = np.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool)
    r = pckh(pred, gt, vis, np.array([10.0, 10.0]), thr=0.5)
    np.testing.assert_array_equal(r.counts, [2, 1, 0, 1])
    np.testing.assert_allclose(r.per_joint[[0, 1, 3]], [1.0, 0.0, 1.0])
    assert np.isnan(r.per_joint[2])
    assert r.total == pytest.approx(3 / 4)  # joint-count weighted (MPII total)
    assert r.mean == pytest.approx(2 / 3)  # unweighted over joints
    assert pckh(pred, gt, vis, np.array([10.0, 10.0]), thr=0.5, exclude=[0]).total == pytest.approx(1 / 2)
    assert pckh(pred, gt, vis, np.array([10.0, 10.0]), thr=0.1).total == pytest.approx(1 / 4)
    # a zero normaliser skips the instance and counts it (mmpose _calc_distances), no error
    r0 = pckh(pred, gt, vis, np.array([10.0, 0.0]), thr=0.5)
    assert r0.skipped == 1 and r0.total == pytest.approx(2 / 3)
    np.testing.assert_array_equal(r0.counts, [1, 1, 0, 1])


def mpii_gt(n: int = 2):
    out = make_gt(MPII, n_images=1, per_image=n, all_labelled=True, with_crowd=False, dataset="syn_mpii")
    for i in out:
        i.head_size = 20.0
    return out


def test_pckh_evaluator_excludes_pelvis_and_thorax_from_the_total():
    gt = mpii_gt()
    pred = preds_from(gt)
    pelvis = MPII.keypoints.index("pelvis")
    pred[:, pelvis, 0] += 0.6 * 20.0  # wrong at 0.5 head
    ev = build_evaluator("pckh", "syn_mpii", gt, MPII, oks_nms_thr=0.9, vis_thr=0.2)  # shared opts ignored
    feed(ev, gt, pred)
    m = ev.compute()
    assert m["PCKh@0.5"] == 1.0
    assert m["PCKh@0.1"] == 1.0
    assert m["PCKh@0.5/all"] == pytest.approx(30 / 32)
    assert m["PCKh@0.5/pelvis"] == 0.0 and m["PCKh@0.5/head_top"] == 1.0
    assert all(isinstance(v, float) for v in m.values())


def test_pckh_evaluator_requires_head_size():
    gt = mpii_gt()
    gt[1].head_size = None
    with pytest.raises(ValueError, match="head_size"):
        build_evaluator("pckh", "syn_mpii", gt, MPII)


def test_bbox_pck_auc_epe_hand_made():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[19.0, 0.0], [0.0, 21.0], [500.0, 0.0]]])
    vis = np.array([[1, 1, 0]], bool)
    assert bbox_pck(pred, gt, vis, np.array([100.0]), thr=0.2).mean == pytest.approx(0.5)

    # mmpose keypoint_auc: thresholds i/20, i = 0..19, strict '<': a perfect prediction scores 0.95
    assert auc(gt, gt, np.ones((1, 3), bool), norm_factor=30.0) == pytest.approx(0.95)
    at15 = np.array([[[15.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    assert auc(at15, gt, np.array([[1, 0, 0]], bool), 30.0) == pytest.approx(9 / 20)  # 0.5 < i/20 for i >= 11
    assert auc(at15, gt, np.array([[1, 1, 0]], bool), 30.0) == pytest.approx((9 / 20 + 19 / 20) / 2)

    off = np.array([[[3.0, 4.0], [6.0, 8.0], [100.0, 0.0]]])
    assert epe(off, gt, vis) == pytest.approx(7.5)
    assert np.isnan(epe(off, gt, np.zeros((1, 3), bool)))


def test_pck_evaluator_on_hands():
    gt = make_gt(HAND, with_crowd=False, dataset="hand")
    ev = build_evaluator("pck", "hand", gt, HAND)
    feed(ev, gt, preds_from(gt))
    m = ev.compute()
    assert m == pytest.approx({"PCK@0.2": 1.0, "AUC": 0.95, "EPE": 0.0, "skipped_instances": 0.0})
    ev.reset()
    # 10 px off everywhere: 10 / max(w, h) < 0.2 for every box here; EPE is exactly 10
    feed(ev, gt, preds_from(gt, shift=(6.0, 8.0)))
    m = ev.compute()
    assert m["EPE"] == pytest.approx(10.0, rel=1e-5) and m["PCK@0.2"] == 1.0
    assert m["AUC"] == pytest.approx(13 / 20)  # 10/30 < i/20 for i = 7..19


def test_unknown_metric_or_option_is_a_clear_error():
    gt = make_gt(COCO, with_crowd=False)
    with pytest.raises(ValueError, match="choose one of"):
        build_evaluator("map", "syn", gt, COCO)
    with pytest.raises(ValueError, match="thrs"):
        build_evaluator("coco", "syn", gt, COCO, thrs=[0.5])


# ----------------------------------------------------------------------------- cross-skeleton


def cross_world(with_extra: bool = True):
    gt = make_gt(COCO, with_crowd=False, dataset="syn_coco")
    rng = np.random.default_rng(5)
    for n, inst in enumerate(gt):
        if with_extra and n != 2:  # figure 2 has no hidden AIC ground truth
            x0, y0, w, h = inst.bbox
            kp = np.ones((AIC.num_keypoints, 3), np.float32) * 2
            kp[:, 0] = x0 + rng.uniform(0, w, AIC.num_keypoints)
            kp[:, 1] = y0 + rng.uniform(0, h, AIC.num_keypoints)
            inst.extra_gt = {"aic": kp}
    return gt


def test_cross_skeleton_exact_predictions_score_one(caplog, tmp_path):
    gt = cross_world()
    ev = build_evaluator("cross", "syn_coco", gt, AIC, head_name="syn_aic", oks_nms_thr=0.9)
    assert isinstance(ev, CrossSkeletonEvaluator)
    pred = np.stack(
        [
            np.concatenate([i.extra_gt["aic"][:, :2], np.ones((14, 1))], 1)
            if i.extra_gt
            else np.zeros((14, 3))
            for i in gt
        ]
    )
    feed(ev, gt, pred)
    with caplog.at_level(logging.INFO, logger="multipose.evaluation"):
        m = ev.compute(tmp_path)
    assert m["cross/syn_aic/AP"] == pytest.approx(1.0)
    assert m["cross/syn_aic/AR"] == pytest.approx(1.0)
    assert m["cross/syn_aic/OKS"] == pytest.approx(1.0)
    assert m["cross/syn_aic/PCK@0.1"] == 1.0
    assert "without hidden ground truth" in caplog.text
    assert (tmp_path / "results_syn_coco_cross_syn_aic.json").exists()

    # a uniform shift gives the analytic OKS per figure; mean over figures of two box sizes
    ev.reset()
    d = 3.0
    feed(ev, gt, pred + np.array([d, 0.0, 0.0]))
    m = ev.compute()
    areas = [i.area for i in gt if i.extra_gt]
    assert m["cross/syn_aic/OKS"] == pytest.approx(np.mean([analytic_oks(d, a, AIC.sigmas) for a in areas]))


def test_cross_skeleton_without_hidden_ground_truth_returns_nothing(caplog):
    gt = cross_world(with_extra=False)
    ev = CrossSkeletonEvaluator("syn_coco", "syn_aic", gt, AIC)
    feed(ev, gt, np.zeros((len(gt), 14, 3), np.float32))
    with caplog.at_level(logging.INFO, logger="multipose.evaluation"):
        assert ev.compute() == {}
    assert "no instance has extra_gt['aic']" in caplog.text


def test_cross_skeleton_rejects_wrong_hidden_shape():
    gt = cross_world()
    gt[0].extra_gt = {"aic": np.zeros((17, 3))}
    with pytest.raises(ValueError, match="extra_gt"):
        CrossSkeletonEvaluator("syn_coco", "syn_aic", gt, AIC)


def test_oks_nms_per_image_never_suppresses_across_images():
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.uniform(0, 100, (17, 2)), np.ones((17, 1))], 1)
    kpts = np.stack([a, a, a, a + [300.0, 0.0, 0.0]])  # same pose in images 7 and 3 (twice)
    kept = oks_nms_per_image(
        kpts, np.array([0.5, 0.9, 0.6, 0.4]), np.full(4, 1e4), np.array([7, 3, 3, 3]), COCO.sigmas
    )
    assert kept.tolist() == [0, 1, 3]
