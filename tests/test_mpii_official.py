"""MPII PCKh with the official head boxes (``mpii_gt_val.mat``) and the loud neck-head fallback (issue 9, item 6).

The .mat files are written here with scipy in the official structure (``dataset_joints`` 1x16 cell,
``jnt_missing`` [16, N], ``pos_gt_src`` [16, 2, N] in 1-based MATLAB pixels, ``headboxes_src`` [2, 2, N]).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.io import savemat

from fixtures_formats import mpii_entry, write_jpegs, write_json
from multipose.data.config import parse_entry
from multipose.data.datamodule import read_split
from multipose.data.formats import read_mpii
from multipose.data.records import DatasetFormatError
from multipose.evaluation import build_evaluator
from multipose.skeletons.registry import get_skeleton

MPII = get_skeleton("mpii")
MPII_JOINTS = [
    "rank",
    "rkne",
    "rhip",
    "lhip",
    "lkne",
    "lank",
    "pelv",
    "thor",
    "neck",
    "head",
    "rwri",
    "relb",
    "rsho",
    "lsho",
    "lelb",
    "lwri",
]


def write_gt_mat(path, joints_1based: np.ndarray, missing: np.ndarray, head_boxes: np.ndarray) -> None:
    """joints [N, 16, 2] 1-based; missing [N, 16]; head_boxes [N, 4] (x1, y1, x2, y2)."""
    names = np.empty((1, 16), dtype=object)
    for j, n in enumerate(MPII_JOINTS):
        names[0, j] = np.array([n])
    boxes = np.stack([head_boxes[:, :2].T, head_boxes[:, 2:].T])  # [2 corners, 2 xy, N]
    savemat(
        str(path),
        {
            "dataset_joints": names,
            "jnt_missing": missing.T.astype(np.uint8),
            "pos_gt_src": joints_1based.transpose(1, 2, 0),
            "headboxes_src": boxes,
        },
    )


@pytest.fixture
def mpii_files(tmp_path):
    rng = np.random.default_rng(3)
    n = 3
    joints = rng.uniform(20, 200, size=(n, 16, 2)).round(1)  # 1-based, as in the official file
    missing = np.zeros((n, 16), bool)
    missing[1, 0] = True  # right ankle of entry 2 not annotated
    boxes = np.array([[30, 10, 60, 50], [100, 20, 124, 52], [5, 5, 35, 45]], np.float64)
    write_gt_mat(tmp_path / "mpii_gt_val.mat", joints, missing, boxes)
    entries = []
    for i in range(n):
        j = joints[i].copy()
        if i == 2:
            j[3] += 5.0  # the JSON copy differs from the official ground truth for one joint
        vis = (~missing[i]).astype(int).tolist()
        entries.append(mpii_entry(f"{i}.jpg", j.tolist(), vis, center=(100.0, 100.0), scale=1.0))
    write_jpegs(tmp_path / "images", [f"{i}.jpg" for i in range(n)])
    ann = write_json(tmp_path / "mpii_val.json", entries)
    return ann, tmp_path / "images", tmp_path / "mpii_gt_val.mat", joints, missing, boxes


def test_official_head_boxes_and_ground_truth_from_the_mat_file(mpii_files, caplog):
    ann, img_dir, mat, joints, missing, boxes = mpii_files
    with caplog.at_level(logging.INFO, logger="multipose.data.formats"):
        insts = read_mpii(ann, img_dir, head_boxes=mat)
    diag = np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.testing.assert_allclose([i.head_size for i in insts], 0.6 * diag, rtol=1e-6)  # SC_BIAS = 0.6
    assert {i.head_size_source for i in insts} == {"head_box"}
    # 1-based MATLAB -> 0-based pixels; the official ground truth wins over the JSON copy
    np.testing.assert_allclose(insts[2].keypoints[:, :2], joints[2] - 1.0, atol=1e-4)
    assert insts[1].keypoints[0].tolist() == [0.0, 0.0, 0.0] and (insts[1].keypoints[1:, 2] == 2).all()
    assert "differs from mpii_val.json" in caplog.text


def test_pckh_with_mat_head_boxes_known_answer(mpii_files):
    ann, img_dir, mat, joints, missing, boxes = mpii_files
    insts = read_mpii(ann, img_dir, head_boxes=mat)
    head = 0.6 * np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    # prediction = official joint (0-based) moved by f * head size along x, f per joint
    f = np.tile(np.array([0.09, 0.49, 0.51, 0.3] * 4), (3, 1))
    f[0, 5] = 0.5  # exactly 0.5 head: correct (MPII compares with <=)
    pred = np.zeros((3, 16, 3), np.float32)
    pred[..., :2] = joints - 1.0
    pred[..., 0] += f * head[:, None]
    pred[..., 2] = 1.0
    ev = build_evaluator("pckh", "mpii", insts, MPII)
    ev.update(pred, image_ids=[i.image_id for i in insts], ann_ids=[i.ann_id for i in insts])
    m = ev.compute()
    visible = ~missing
    counted = visible.copy()
    counted[:, [6, 7]] = False  # pelvis and thorax are left out of the MPII total
    correct = f <= 0.5 + 1e-9
    assert m["PCKh@0.5"] == pytest.approx((correct & counted).sum() / counted.sum(), abs=1e-6)
    assert m["PCKh@0.1"] == pytest.approx(((f <= 0.1 + 1e-9) & counted).sum() / counted.sum(), abs=1e-6)
    assert m["pckh_normaliser_neck_head"] == 0.0


def test_data_entry_names_the_head_boxes(mpii_files, tmp_path):
    ann, img_dir, mat, *_ = mpii_files
    split = {"ann_file": ann.name, "img_dir": "images"}
    entry = parse_entry(
        "mpii",
        {
            "format": "mpii",
            "skeleton": "mpii",
            "metric": "pckh",
            "train": split,
            "val": {**split, "head_boxes": mat.name},
        },
        str(tmp_path),
    )
    assert entry.val.head_boxes == str(mat)
    insts = read_split(entry, "val", MPII)
    assert {i.head_size_source for i in insts} == {"head_box"}
    broken = parse_entry(
        "mpii",
        {"format": "mpii", "skeleton": "mpii", "train": split, "val": {**split, "head_boxes": "nope.mat"}},
        str(tmp_path),
    )
    with pytest.raises(ValueError, match="head_boxes"):
        broken.check_files(("val",))


def test_mat_file_of_another_split_is_rejected(mpii_files, tmp_path):
    ann, img_dir, _, joints, missing, boxes = mpii_files
    other = tmp_path / "other.mat"
    write_gt_mat(other, joints[:2], missing[:2], boxes[:2])
    with pytest.raises(DatasetFormatError, match="2 entries but .*3"):
        read_mpii(ann, img_dir, head_boxes=other)
    (tmp_path / "junk.mat").write_bytes(b"not matlab")
    with pytest.raises(DatasetFormatError, match="junk.mat"):
        read_mpii(ann, img_dir, head_boxes=tmp_path / "junk.mat")


def test_neck_head_fallback_is_loud_and_noted_in_the_metrics(mpii_files, caplog):
    ann, img_dir, *_ = mpii_files
    with caplog.at_level(logging.WARNING):
        insts = read_mpii(ann, img_dir)  # no head boxes anywhere
        assert "NOT the official MPII number" in caplog.text
        assert {i.head_size_source for i in insts} == {"neck_head"}
        ev = build_evaluator("pckh", "mpii", insts, MPII)
        pred = np.stack([i.keypoints for i in insts])
        ev.update(pred, image_ids=[i.image_id for i in insts], ann_ids=[i.ann_id for i in insts])
        m = ev.compute()
    assert m["pckh_normaliser_neck_head"] == 1.0
    assert "not comparable" in caplog.text
