"""Annotation readers on format-exact fixtures: counts, keypoint order, visibility, geometry, errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from fixtures_formats import (
    WHOLEBODY_COUNTS,
    WHOLEBODY_MARKERS,
    coco_ann,
    coco_file,
    coco_image,
    flat_keypoints,
    mpii_entry,
    wholebody_ann,
    write_jpegs,
    write_json,
)
from multipose.data.formats import (
    DatasetFormatError,
    Instance,
    get_reader,
    read_coco,
    read_coco_images,
    read_detections,
    read_mpii,
    training_instances,
)
from multipose.skeletons import get_skeleton

# ------------------------------------------------------------------------------------------------
# COCO-style
# ------------------------------------------------------------------------------------------------


def _person_file(tmp_path):
    images = [coco_image(1, "a.jpg"), coco_image(7, "sub/b.jpg")]
    vis = [2, 1, 0] + [2] * 14
    anns = [
        coco_ann(10, 1, 17, keypoints=flat_keypoints(17, visible=vis), area=321.5),
        coco_ann(11, 7, 17, bbox=(-4.0, 30.0, 100.0, 40.0), iscrowd=1, keypoints=[0.0] * 51),
        coco_ann(12, 7, 17, keypoints=[0.0] * 51),
    ]
    return coco_file(tmp_path, images, anns)


def test_read_coco_person_keypoints(tmp_path):
    ann_file, img_dir = _person_file(tmp_path)
    insts, index = read_coco(ann_file, img_dir, "coco", "coco_val", return_images=True)
    assert [i.ann_id for i in insts] == [10, 11, 12]
    assert index == {1: str(img_dir / "a.jpg"), 7: str(img_dir / "sub" / "b.jpg")}
    a, crowd, empty = insts
    assert isinstance(a, Instance) and a.dataset == "coco_val" and a.image_id == 1
    assert a.image_path == str(img_dir / "a.jpg")
    assert a.keypoints.shape == (17, 3) and a.keypoints.dtype == np.float32
    np.testing.assert_array_equal(a.keypoints[:, 0], np.arange(17))  # order preserved
    np.testing.assert_array_equal(a.keypoints[:3, 2], [2, 1, 0])  # visibility as stored
    assert a.area == pytest.approx(321.5)  # 'area' field wins over the box
    assert empty.area == pytest.approx(30 * 20)  # no 'area' field: box area
    assert a.score == 1.0 and a.center is None and not a.iscrowd
    # crowd kept and flagged; its box is clipped to the 64x48 image ([0, 63] x [0, 47])
    assert crowd.iscrowd
    np.testing.assert_allclose(crowd.bbox, [0.0, 30.0, 63.0, 17.0])


def test_training_instances_logs_what_it_drops(tmp_path, caplog):
    ann_file, img_dir = _person_file(tmp_path)
    insts = read_coco(ann_file, img_dir, "coco", "coco_train")
    with caplog.at_level(logging.INFO, logger="multipose.data.formats"):
        kept = training_instances(insts)
    assert [i.ann_id for i in kept] == [10]
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "coco_train train: 1 of 3 records are samples" in msg
    assert "1 crowd" in msg and "1 unlabelled" in msg


@pytest.mark.parametrize(
    "skeleton,k", [("aic", 14), ("crowdpose", 14), ("ap10k", 17), ("halpe", 136), ("ochuman", 17)]
)
def test_read_coco_other_skeletons(tmp_path, skeleton, k):
    vis = [2] * k
    vis[-1] = 0
    anns = [coco_ann(1, 3, k, keypoints=flat_keypoints(k, x0=1.5, visible=vis)), coco_ann(2, 3, k)]
    ann_file, img_dir = coco_file(tmp_path, [coco_image(3, "x.jpg")], anns)
    insts = read_coco(ann_file, img_dir, skeleton, skeleton)
    assert len(insts) == 2
    assert insts[0].keypoints.shape == (k, 3)
    np.testing.assert_allclose(insts[0].keypoints[:, 0], 1.5 + np.arange(k))
    assert insts[0].keypoints[-1, 2] == 0 and insts[0].num_labelled == k - 1


def test_read_coco_wholebody_assembles_parts(tmp_path):
    ann_file, img_dir = coco_file(tmp_path, [coco_image(5, "w.jpg")], [wholebody_ann(1, 5)])
    (inst,) = read_coco(ann_file, img_dir, "coco_wholebody", "wb", layout="coco_wholebody")
    kps = inst.keypoints
    assert kps.shape == (133, 3)
    x = kps[:, 0]
    np.testing.assert_array_equal(x[0:17], WHOLEBODY_MARKERS["keypoints"] + np.arange(17))
    np.testing.assert_array_equal(x[17:23], WHOLEBODY_MARKERS["foot_kpts"] + np.arange(6))
    np.testing.assert_array_equal(x[23:91], WHOLEBODY_MARKERS["face_kpts"] + np.arange(68))
    np.testing.assert_array_equal(x[91:112], WHOLEBODY_MARKERS["lefthand_kpts"] + np.arange(21))
    np.testing.assert_array_equal(x[112:133], WHOLEBODY_MARKERS["righthand_kpts"] + np.arange(21))
    skel = get_skeleton("coco_wholebody")
    assert kps[skel.index("left_hand_root"), 0] == 300 and kps[skel.index("right_pinky_finger4"), 0] == 420
    assert kps[skel.index("left_heel"), 0] == 102 and kps[skel.index("face-0"), 0] == 200
    # the format name used in data configs maps to the same reader
    (again,) = get_reader("coco_wholebody")(ann_file, img_dir, "coco_wholebody", "wb")
    np.testing.assert_array_equal(again.keypoints, kps)


def test_read_coco_gt_all_into_extra_gt(tmp_path):
    gt_all = {"mpii": flat_keypoints(16, x0=3.0), "aic": flat_keypoints(14)}
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [coco_ann(1, 1, 17, gt_all=gt_all)])
    (inst,) = read_coco(ann_file, img_dir, "coco", "syn_coco")
    assert set(inst.extra_gt) == {"mpii", "aic"}
    assert inst.extra_gt["mpii"].shape == (16, 3) and inst.extra_gt["aic"].shape == (14, 3)
    assert inst.extra_gt["mpii"][2, 0] == 5.0


def test_read_coco_images_for_image_only_file(tmp_path):
    path = write_json(tmp_path / "info.json", {"images": [coco_image(4, "q.jpg")]})
    assert read_coco_images(path, tmp_path / "img") == {4: str(tmp_path / "img" / "q.jpg")}


# -- COCO errors ---------------------------------------------------------------------------------


def _err(fn, *args, **kw) -> str:
    with pytest.raises(DatasetFormatError) as exc:
        fn(*args, **kw)
    return str(exc.value)


def test_coco_wrong_keypoint_count(tmp_path):
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [coco_ann(42, 1, 17)])
    msg = _err(read_coco, ann_file, img_dir, "aic", "aic")
    assert str(ann_file) in msg and "annotation id=42" in msg
    assert "51 values" in msg and "'aic' has 14 keypoints" in msg and "skeleton" in msg


def test_coco_zero_area_box_error_and_skip(tmp_path, caplog):
    anns = [
        coco_ann(1, 1, 17),
        coco_ann(2, 1, 17, bbox=(3.0, 3.0, 0.0, 10.0)),
        coco_ann(3, 1, 17, bbox=(100.0, 3.0, 10.0, 10.0)),
    ]  # outside the 64-px-wide image
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], anns)
    msg = _err(read_coco, ann_file, img_dir, "coco", "c")
    assert "annotation id=2" in msg and "zero or negative" in msg and "data.invalid_boxes=skip" in msg
    with caplog.at_level(logging.WARNING, logger="multipose.data.formats"):
        insts = read_coco(ann_file, img_dir, "coco", "c", invalid_boxes="skip")
    # kept as ground truth, never samples
    assert [(i.ann_id, i.unusable) for i in insts] == [(1, None), (2, "invalid_box"), (3, "invalid_box")]
    assert [i.ann_id for i in training_instances(insts)] == [1]
    assert "2 of 3 annotations have a box without area" in caplog.text


def test_coco_missing_image_file(tmp_path):
    ann_file, img_dir = coco_file(
        tmp_path, [coco_image(1, "missing.jpg")], [coco_ann(1, 1, 17)], make_images=False
    )
    msg = _err(read_coco, ann_file, img_dir, "coco", "c")
    assert str(ann_file) in msg and "missing.jpg" in msg and "data.on_bad_image=skip" in msg
    assert len(read_coco(ann_file, img_dir, "coco", "c", check_images=False)) == 1


@pytest.mark.parametrize("field", ["bbox", "keypoints", "image_id", "id"])
def test_coco_missing_annotation_field(tmp_path, field):
    ann = coco_ann(9, 1, 17)
    del ann[field]
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [ann])
    msg = _err(read_coco, ann_file, img_dir, "coco", "c")
    assert f"missing required field '{field}'" in msg and str(ann_file) in msg and "annotations[0]" in msg


def test_coco_wholebody_missing_part(tmp_path):
    ann = wholebody_ann(3, 1)
    del ann["face_kpts"]
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [ann])
    msg = _err(read_coco, ann_file, img_dir, "coco_wholebody", "wb", layout="coco_wholebody")
    assert "annotation id=3" in msg and "'face_kpts'" in msg
    # a part of the wrong length
    ann = wholebody_ann(4, 1)
    ann["lefthand_kpts"] = ann["lefthand_kpts"][:-3]
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [ann], name="b.json")
    msg = _err(read_coco, ann_file, img_dir, "coco_wholebody", "wb", layout="coco_wholebody")
    assert "'lefthand_kpts' has 60 values" in msg


def test_coco_wholebody_layout_needs_133(tmp_path):
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [wholebody_ann(1, 1)])
    msg = _err(read_coco, ann_file, img_dir, "coco", "c", layout="coco_wholebody")
    assert "133" in msg and "'coco'" in msg


def test_coco_empty_annotations(tmp_path):
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [])
    msg = _err(read_coco, ann_file, img_dir, "coco", "c")
    assert str(ann_file) in msg and "annotation list is empty" in msg


def test_coco_missing_annotations_key(tmp_path):
    path = write_json(tmp_path / "x.json", {"images": []})
    msg = _err(read_coco, path, tmp_path, "coco", "c")
    assert "missing required field 'annotations'" in msg


def test_coco_image_id_without_image(tmp_path):
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [coco_ann(5, 99, 17)])
    msg = _err(read_coco, ann_file, img_dir, "coco", "c")
    assert "annotation id=5" in msg and "image_id 99 has no entry in 'images'" in msg


def test_coco_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [], "annotations": [\n  {"id": 1,,}\n]}')
    msg = _err(read_coco, path, tmp_path, "coco", "c")
    assert str(path) in msg and "malformed JSON" in msg and "line 2" in msg


def test_coco_nonnumeric_keypoints_and_bad_gt_all(tmp_path):
    ann = coco_ann(1, 1, 17)
    ann["keypoints"][4] = None
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [ann])
    assert "field 'keypoints' has null, NaN or infinite values (flat positions [4])" in _err(
        read_coco, ann_file, img_dir, "coco", "c"
    )
    ann = coco_ann(2, 1, 17, gt_all={"mpii": flat_keypoints(15)})
    ann_file, img_dir = coco_file(tmp_path, [coco_image(1, "a.jpg")], [ann], name="g.json")
    assert "'gt_all.mpii' has 15 keypoints but skeleton 'mpii' has 16" in _err(
        read_coco, ann_file, img_dir, "coco", "c"
    )


def test_coco_duplicate_ids(tmp_path):
    ann_file, img_dir = coco_file(
        tmp_path, [coco_image(1, "a.jpg")], [coco_ann(1, 1, 17), coco_ann(1, 1, 17)]
    )
    assert "duplicate annotation id 1" in _err(read_coco, ann_file, img_dir, "coco", "c")
    ann_file, img_dir = coco_file(
        tmp_path, [coco_image(1, "a.jpg"), coco_image(1, "b.jpg")], [coco_ann(1, 1, 17)], name="d.json"
    )
    assert "duplicate image id 1" in _err(read_coco, ann_file, img_dir, "coco", "c")


# ------------------------------------------------------------------------------------------------
# MPII
# ------------------------------------------------------------------------------------------------


def _mpii_joints(x0: float) -> list[list[float]]:
    return [[x0 + 2 * j, 20.0 + 3 * j] for j in range(16)]


def _mpii_file(tmp_path, entries):
    write_jpegs(tmp_path / "images", sorted({e["image"] for e in entries}))
    return write_json(tmp_path / "mpii.json", entries), tmp_path / "images"


def test_read_mpii(tmp_path, caplog):
    vis = [1] * 16
    vis[0] = 0  # right ankle unlabelled
    entries = [
        mpii_entry("b.jpg", _mpii_joints(11.0), vis, center=(30.0, 40.0), scale=1.0, headbox=[10, 5, 22, 21]),
        mpii_entry("a.jpg", _mpii_joints(5.0), [1] * 16, center=(25.0, 35.0), scale=0.5),
        mpii_entry("b.jpg", _mpii_joints(1.0), [1] * 16, center=(20.0, 30.0), scale=0.8),
    ]
    ann_file, img_dir = _mpii_file(tmp_path, entries)
    with caplog.at_level(logging.INFO, logger="multipose.data.formats"):
        insts = read_mpii(ann_file, img_dir, "mpii", "mpii_val")
    assert len(insts) == 3
    first, second, third = insts
    # stable ids from sorted image names: a.jpg -> 1, b.jpg -> 2; ann ids = 1-based list position
    assert [i.image_id for i in insts] == [2, 1, 2] and [i.ann_id for i in insts] == [1, 2, 3]
    assert first.image_path == str(img_dir / "b.jpg")
    # 1-based MATLAB coordinates -> 0-based; visibility -> COCO v
    np.testing.assert_allclose(first.keypoints[1, :2], [11.0 + 2 - 1, 20.0 + 3 - 1])
    assert first.keypoints[0].tolist() == [0.0, 0.0, 0.0]
    assert (first.keypoints[1:, 2] == 2).all()
    # mmpose centre/scale: c[1] += 15 s, s *= 1.25, then c -= 1; scale in pixels = s * 200
    np.testing.assert_allclose(first.center, [30.0 - 1, 40.0 + 15 * 1.0 - 1])
    np.testing.assert_allclose(first.scale, [250.0, 250.0])
    np.testing.assert_allclose(second.center, [24.0, 35.0 + 7.5 - 1])
    np.testing.assert_allclose(second.scale, [125.0, 125.0])
    # tight box around labelled (0-based) joints
    xy = first.keypoints[1:, :2]
    np.testing.assert_allclose(first.bbox, [xy[:, 0].min(), xy[:, 1].min(), 28.0, 42.0])
    assert first.area == pytest.approx(28.0 * 42.0)
    # head size: 0.6 * head-box diagonal; fallback: |upper_neck - head_top| (indices 8, 9)
    assert first.head_size == pytest.approx(0.6 * np.hypot(12, 16))
    assert second.head_size == pytest.approx(np.hypot(2, 3))
    assert "2 of 3 entries have no 'headbox'" in caplog.text
    # the index of images for detections
    _, index = read_mpii(ann_file, img_dir, return_images=True)
    assert index == {1: str(img_dir / "a.jpg"), 2: str(img_dir / "b.jpg")}


def test_read_mpii_box_fallback_and_missing_head(tmp_path, caplog):
    vis = [0] * 16
    vis[3] = 1  # a single labelled joint: no tight box, no head segment
    entries = [mpii_entry("a.jpg", _mpii_joints(5.0), vis, center=(41.0, 31.0), scale=0.1)]
    ann_file, img_dir = _mpii_file(tmp_path, entries)
    with caplog.at_level(logging.WARNING, logger="multipose.data.formats"):
        (inst,) = read_mpii(ann_file, img_dir)
    np.testing.assert_allclose(inst.bbox, [40.0 - 10.0, 30.0 - 10.0, 20.0, 20.0])
    assert inst.head_size is None and "head_size is None" in caplog.text


def test_mpii_errors(tmp_path):
    good = mpii_entry("a.jpg", _mpii_joints(5.0), [1] * 16, center=(25.0, 35.0), scale=0.5)
    ann_file, img_dir = _mpii_file(
        tmp_path, [good, mpii_entry("a.jpg", _mpii_joints(5.0)[:14], [1] * 14, center=(1, 1), scale=1.0)]
    )
    msg = _err(read_mpii, ann_file, img_dir)
    assert str(ann_file) in msg and "annotation id=2" in msg and "14 points" in msg and "16 keypoints" in msg

    bad = dict(good)
    del bad["scale"]
    path = write_json(tmp_path / "m2.json", [bad])
    assert "missing required field 'scale'" in _err(read_mpii, path, img_dir)

    path = write_json(tmp_path / "m3.json", [dict(good, scale=-1.0)])
    assert "field 'scale' must be a positive number" in _err(read_mpii, path, img_dir)

    path = write_json(tmp_path / "m4.json", [])
    assert "annotation list is empty" in _err(read_mpii, path, img_dir)

    path = write_json(tmp_path / "m5.json", {"annotations": []})
    assert "expected a JSON list" in _err(read_mpii, path, img_dir)

    path = write_json(tmp_path / "m6.json", [dict(good, image="nope.jpg")])
    assert "nope.jpg" in _err(read_mpii, path, img_dir)


# ------------------------------------------------------------------------------------------------
# Detections
# ------------------------------------------------------------------------------------------------


def test_read_detections(tmp_path, caplog):
    ann_file, img_dir = _person_file(tmp_path)
    _, index = read_coco(ann_file, img_dir, "coco", "coco_val", return_images=True)
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [3.0, 4.0, 5.0, 6.0], "score": 0.05},
        {"image_id": 7, "category_id": 2, "bbox": [3.0, 4.0, 5.0, 6.0], "score": 0.8},
    ]
    det_file = write_json(tmp_path / "dets.json", dets)
    with caplog.at_level(logging.INFO, logger="multipose.data.formats"):
        insts = read_detections(det_file, index, "coco_val", "coco", score_thr=0.1, category_ids=[1])
    assert len(insts) == 1
    (d,) = insts
    assert d.ann_id == -1 and d.image_id == 1 and d.image_path == index[1]
    assert d.keypoints.shape == (17, 3) and not d.keypoints.any()
    assert d.score == pytest.approx(0.9) and d.area == pytest.approx(200.0)
    np.testing.assert_allclose(d.bbox, [1, 2, 10, 20])
    assert "1 of 3 detections kept" in caplog.text and "1 below score_thr" in caplog.text
    # without filters every detection is kept
    assert len(read_detections(det_file, index, "coco_val", "coco")) == 3


def test_detection_errors(tmp_path):
    index = {1: str(tmp_path / "a.jpg")}
    path = write_json(
        tmp_path / "d1.json", [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]
    )
    msg = _err(read_detections, path, index, "c", "coco")
    assert str(path) in msg and "image_id 2 is not in the image index" in msg
    path = write_json(
        tmp_path / "d2.json", [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}]
    )
    assert "zero or negative" in _err(read_detections, path, index, "c", "coco")
    assert read_detections(path, index, "c", "coco", invalid_boxes="skip") == []
    path = write_json(tmp_path / "d3.json", [])
    assert "detection list is empty" in _err(read_detections, path, index, "c", "coco")
    path = write_json(tmp_path / "d4.json", [{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    assert "missing required field 'score'" in _err(read_detections, path, index, "c", "coco")


# ------------------------------------------------------------------------------------------------
# Misc
# ------------------------------------------------------------------------------------------------


def test_instance_coerces_and_validates():
    inst = Instance("p.jpg", 1, 2, "d", bbox=[1, 2, 3, 4], keypoints=[[1, 2, 2]] * 5, area=12)
    assert inst.bbox.dtype == np.float32 and inst.keypoints.shape == (5, 3) and inst.extra_gt == {}
    other = Instance("p.jpg", 1, 3, "d", bbox=[1, 2, 3, 4], keypoints=[[1, 2, 2]] * 5, area=12)
    assert other.extra_gt is not inst.extra_gt  # no shared mutable default
    with pytest.raises(ValueError, match=r"shape \[K, 3\]"):
        Instance("p.jpg", 1, 2, "d", bbox=[1, 2, 3, 4], keypoints=[1, 2, 3], area=1)


def test_unknown_format_name():
    with pytest.raises(ValueError, match="known formats: coco, coco_wholebody, interhand, mpii"):
        get_reader("yolo")


def test_wholebody_fixture_counts_match_skeleton():
    # guards the fixture itself: the part sizes add up to the registry's 133
    assert sum(WHOLEBODY_COUNTS.values()) == get_skeleton("coco_wholebody").num_keypoints
    assert json.dumps(wholebody_ann(1, 1))  # serialisable
