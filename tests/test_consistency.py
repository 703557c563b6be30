"""Cross-head disagreement (CHD): hand-computed values, and the keys validation logs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from multipose.evaluation.consistency import box_size, cross_head_distances, summarize_chd
from multipose.skeletons import correspondence, get_skeleton


def test_cross_head_distances_by_hand():
    # two instances; head A has 3 joints, head B 2; pairs (0 -> 1), (2 -> 0)
    a = np.array([[[0, 0, 1], [9, 9, 1], [10, 0, 1]], [[5, 5, 1], [0, 0, 1], [5, 5, 1]]], float)
    b = np.array([[[10, 3, 1], [3, 4, 1]], [[5, 5, 1], [5, 25, 1]]], float)
    sizes = box_size(np.array([[10, 10], [4, 25]]))  # sqrt(w*h): 10 and 10
    assert sizes == pytest.approx([10, 10])
    d = cross_head_distances(a, b, [(0, 1), (2, 0)], sizes)
    # instance 0: |(0,0)-(3,4)| = 5 -> 0.5 ; |(10,0)-(10,3)| = 3 -> 0.3
    # instance 1: |(5,5)-(5,25)| = 20 -> 2.0 ; |(5,5)-(5,5)| = 0 -> 0
    assert d == pytest.approx(np.array([[0.5, 0.3], [2.0, 0.0]]))
    chd = summarize_chd(d)
    assert chd["CHD"] == pytest.approx(0.7)
    assert chd["CHD_p90"] == pytest.approx(np.percentile([0.5, 0.3, 2.0, 0.0], 90))  # 1.55
    assert chd["CHD_p90"] == pytest.approx(1.55)


def test_no_pairs_or_bad_pairs():
    assert np.isnan(summarize_chd(np.zeros(0))["CHD"])
    assert cross_head_distances(np.zeros((2, 3, 3)), np.zeros((2, 2, 3)), [], np.ones(2)).shape == (2, 0)
    with pytest.raises(ValueError, match="out of range"):
        cross_head_distances(np.zeros((1, 3, 3)), np.zeros((1, 2, 3)), [(0, 2)], np.ones(1))
    with pytest.raises(ValueError, match="boxes"):
        cross_head_distances(np.zeros((2, 3, 3)), np.zeros((2, 2, 3)), [(0, 0)], np.ones(3))


def test_mix_evaluation_logs_consistency_between_heads_on_shared_joints():
    from multipose.evaluation.mix import MixEvaluation
    from multipose.inference import DatasetSpec, MixSpec

    spec = MixSpec(
        (DatasetSpec("a", "coco", metric="pck"), DatasetSpec("b", "mpii", metric="pck")), (64, 48), (16, 12)
    )
    coco, mpii = get_skeleton("coco"), get_skeleton("mpii")
    pairs = correspondence(coco, mpii)
    assert pairs  # wrists, elbows, ... share tags

    def gt(n: int, k: int):
        return [
            SimpleNamespace(
                ann_id=i, image_id=i, bbox=np.array([0, 0, 40, 40.0]), keypoints=np.ones((k, 3)), extra_gt={}
            )
            for i in range(n)
        ]

    evaluation = MixEvaluation(spec, {"a": gt(2, 17), "b": gt(2, 16)}, {})
    assert evaluation.heads_for("a") == ["a", "b"]
    own = np.zeros((2, 17, 3))
    other = np.zeros((2, 16, 3))
    other[..., 0] = 4.0  # every joint 4 px to the right; crop box 20 x 20 -> 0.2 box sizes
    batch = {
        "ann_id": np.arange(2),
        "image_id": np.arange(2),
        "bbox_score": np.ones(2),
        "area": np.full(2, 1600.0),
        "scale": np.full((2, 2), 20.0),
    }
    evaluation.update("a", batch, {"a": own, "b": other})
    evaluation.update("b", batch, {"b": other, "a": own})
    metrics = evaluation.compute(None)
    assert metrics["val/a/consistency/CHD"] == pytest.approx(0.2)
    assert metrics["val/a/consistency/CHD_p90"] == pytest.approx(0.2)
    assert metrics["val/b/consistency/CHD"] == pytest.approx(0.2)
    assert "val/score" in metrics


def test_mix_evaluation_passes_image_list_nms_area_and_dataset_options_to_the_evaluators():
    """The mix evaluation hands each COCO evaluator the file's image list (false positives on images without
    people), the crops' scale (OKS-NMS area = prod(scale), as mmpose) and the data entry's own metric options,
    which win over the evaluation-wide ones."""
    from multipose.data.records import Instance
    from multipose.evaluation.mix import MixEvaluation
    from multipose.inference import DatasetSpec, MixSpec

    spec = MixSpec(
        (DatasetSpec("a", "coco", metric="coco", metric_options={"use_nms": False}),), (64, 48), (16, 12)
    )
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(10, 50, 17), np.linspace(10, 90, 17), 2
    inst = Instance(
        image_path="1.jpg",
        image_id=1,
        ann_id=7,
        dataset="a",
        bbox=[10, 10, 40, 80],
        keypoints=kp,
        area=1600.0,
    )
    evaluation = MixEvaluation(
        spec, {"a": [inst]}, {"oks_nms_thr": 0.9, "cross_skeleton": False}, images={"a": {1: {}, 2: {}}}
    )
    ev = evaluation.evaluators["a"]
    assert ev.use_nms is False  # the entry's option won
    assert {im["id"] for im in ev.gt["images"]} == {1, 2}
    perfect = np.concatenate([kp[None, :, :2], np.ones((1, 17, 1))], -1)
    batch = {
        "ann_id": np.array([7, -1]),
        "image_id": np.array([1, 2]),
        "bbox_score": np.array([1.0, 1.0]),
        "area": np.array([3200.0, 3200.0]),
        "scale": np.array([[50.0, 100.0], [50.0, 100.0]]),
    }
    # a perfect pose on image 1 and a more confident pose on image 2, which has nobody: a false positive ranked first
    fp = perfect.copy()
    perfect[..., 2] = 0.8
    evaluation.update("a", batch, {"a": np.concatenate([perfect, fp])})
    assert ev.state()["areas"].tolist() == [5000.0, 5000.0]  # prod(scale), not the batch's 'area'
    metrics = evaluation.compute()
    assert metrics["val/a/AP"] == pytest.approx(0.5, abs=0.01)  # precision 1/2 at the only recall step
