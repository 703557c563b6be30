"""Parity with the reference tool itself: our pycocotools-based protocols vs xtcocotools (mmpose's evaluator).

xtcocotools is not a dependency (its PyPI wheels are built against numpy 1.x and need matplotlib); this test
runs wherever ``import xtcocotools.cocoeval`` works and is skipped elsewhere. On a random world with crowd
regions, people without labels, zero-score predictions and images without people, every reported number
must be identical: COCO (use_area), AIC (use_area=False), CrowdPose (AP_easy/medium/hard) and each
COCO-WholeBody part.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pytest

from multipose.data.records import Instance
from multipose.evaluation.coco import build_coco_gt, evaluate_keypoints, results_to_coco
from multipose.evaluation.protocols import WHOLEBODY_PARTS, protocol_defaults, resolve_parts
from multipose.skeletons.registry import get_skeleton

xt_coco = pytest.importorskip("xtcocotools.coco", reason="xtcocotools is not importable here")
xt_eval = pytest.importorskip("xtcocotools.cocoeval")

N_IMAGES = 30
WB_FIELDS = {
    "body": "keypoints",
    "foot": "foot_kpts",
    "face": "face_kpts",
    "lefthand": "lefthand_kpts",
    "righthand": "righthand_kpts",
}


def random_world(skel, seed: int, crowd: bool):
    rng = np.random.default_rng(seed)
    k, insts = skel.num_keypoints, []
    for img in range(1, N_IMAGES + 1):
        for _ in range(rng.integers(0, 4)):
            w, h = rng.uniform(20, 300, 2)
            x0, y0 = rng.uniform(0, 400, 2)
            kp = np.zeros((k, 3), np.float32)
            kp[:, 0], kp[:, 1] = x0 + rng.uniform(0, w, k), y0 + rng.uniform(0, h, k)
            kp[:, 2] = rng.choice([0, 1, 2], k, p=[0.3, 0.2, 0.5])
            kp[kp[:, 2] == 0, :2] = 0
            if rng.random() < 0.1:
                kp[:] = 0
            insts.append(
                Instance(
                    image_path=f"{img}.jpg",
                    image_id=img,
                    ann_id=len(insts) + 1,
                    dataset="x",
                    bbox=[x0, y0, w, h],
                    keypoints=kp,
                    area=float(rng.uniform(0.3, 0.9) * w * h),
                    iscrowd=bool(rng.random() < 0.05),
                )
            )
    images = {
        i: {"crowdIndex": float(rng.choice([0.05, 0.19, 0.2, 0.5, 0.8, 0.9]))} if crowd else {}
        for i in range(1, N_IMAGES + 1)
    }
    preds, ids, scores = [], [], []
    for inst in insts:
        for _ in range(rng.integers(0, 3)):
            p = inst.keypoints.copy()
            p[:, :2] += rng.normal(0, rng.uniform(1, 15), (k, 2))
            p[:, 2] = rng.uniform(0, 1, k) * (rng.random() > 0.1)
            preds.append(p), ids.append(inst.image_id), scores.append(rng.uniform(0, 1))
    for _ in range(20):  # anywhere, also on images without people; some without any keypoint score
        p = np.zeros((k, 3), np.float32)
        p[:, :2] = rng.uniform(0, 600, (k, 2))
        p[:, 2] = rng.uniform(0, 1, k) * (rng.random() > 0.3)
        preds.append(p), ids.append(int(rng.integers(1, N_IMAGES + 1))), scores.append(rng.uniform(0, 1))
    return insts, images, results_to_coco(np.array(ids), np.stack(preds), np.array(scores))


def to_reference(gt, results, wholebody: bool):
    gt, results = json.loads(json.dumps(gt)), json.loads(json.dumps(results))
    for a in gt["annotations"]:
        a["area"] = a["source_area"]  # the reference tool applies use_area itself
    if wholebody:
        parts = resolve_parts(WHOLEBODY_PARTS, get_skeleton("coco_wholebody").keypoints)
        for d in gt["annotations"] + results:
            kp = np.asarray(d["keypoints"]).reshape(-1, 3)
            for part, field in WB_FIELDS.items():
                d[field] = kp[parts[part]].reshape(-1).tolist()
    return gt, results


def reference_stats(gt, results, iou_type, sigmas, use_area, tmp_path):
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = xt_coco.COCO(str(gt_path))
        ev = xt_eval.COCOeval(
            coco, coco.loadRes(str(res_path)), iou_type, np.asarray(sigmas), use_area=use_area
        )
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64)


@pytest.mark.parametrize(
    "name,iou_type", [("coco", "keypoints"), ("aic", "keypoints"), ("crowdpose", "keypoints_crowd")]
)
def test_body_protocols_match_xtcocotools(name, iou_type, tmp_path):
    skel = get_skeleton(name)
    proto = protocol_defaults("auto", name)
    insts, images, results = random_world(skel, seed=1, crowd=proto["crowd_thresholds"] is not None)
    gt = build_coco_gt(insts, skel.keypoints, images=images, use_area=proto["use_area"])
    ours = evaluate_keypoints(
        gt,
        results,
        skel.sigmas,
        drop_zero_score=proto["drop_zero_score"],
        crowd_thresholds=proto["crowd_thresholds"],
    ).metrics
    ref = reference_stats(
        *to_reference(gt, results, False), iou_type, skel.sigmas, proto["use_area"], tmp_path
    )
    np.testing.assert_array_equal(np.array(list(ours.values())), ref)


def test_coco_wholebody_parts_match_xtcocotools(tmp_path):
    skel = get_skeleton("coco_wholebody")
    proto = protocol_defaults("auto", "coco_wholebody")
    parts = resolve_parts(proto["parts"], skel.keypoints)
    insts, images, results = random_world(skel, seed=2, crowd=False)
    gt = build_coco_gt(insts, skel.keypoints, images=images)
    sig = np.asarray(skel.sigmas)
    ref_gt, ref_res = to_reference(gt, results, True)
    for part in [*parts, None]:
        idx = parts[part] if part else None
        ours = evaluate_keypoints(
            gt, results, sig, drop_zero_score=True, part=idx, det_area_keypoints=parts["body"]
        ).metrics
        iou = f"keypoints_{part}" if part else "keypoints_wholebody"
        ref = reference_stats(ref_gt, ref_res, iou, sig[idx] if idx else sig, True, tmp_path)
        np.testing.assert_array_equal(np.array(list(ours.values())), ref, err_msg=iou)
