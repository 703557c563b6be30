"""Skeleton registry: every shipped YAML is consistent, lookups and layouts work, bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from multipose.skeletons import (
    Skeleton,
    SkeletonError,
    available_skeletons,
    correspondence,
    get_skeleton,
    load_skeleton_file,
    load_vocabulary,
    unified_layout,
)
from multipose.skeletons.registry import SKELETON_DIR, VOCABULARY_FILE

SKELETON_FILES = sorted(p for p in SKELETON_DIR.glob("*.yaml") if p != VOCABULARY_FILE)

EXPECTED_COUNTS = {
    "coco": 17,
    "ochuman": 17,
    "aic": 14,
    "mpii": 16,
    "crowdpose": 14,
    "coco_wholebody": 133,
    "halpe": 136,
    "ap10k": 17,
    "apt36k": 17,
    "onehand10k": 21,
    "interhand": 21,
    "smpl24": 24,
    "3dpw": 24,
}


def test_skeleton_files_found():
    names = {p.stem for p in SKELETON_FILES}
    assert {"coco", "aic", "mpii", "crowdpose", "coco_wholebody", "halpe", "ap10k", "ochuman"} <= names
    assert {"onehand10k", "interhand", "smpl24"} <= names


@pytest.mark.parametrize("path", SKELETON_FILES, ids=lambda p: p.stem)
def test_every_skeleton_file_is_consistent(path: Path):
    skel = load_skeleton_file(path)
    vocab = load_vocabulary()
    k = skel.num_keypoints
    assert len(skel.keypoints) == len(set(skel.keypoints)) == k
    assert len(skel.semantic) == len(set(skel.semantic)) == k
    assert all(tag in vocab for tag in skel.semantic)
    # flip_indices is an involution whose partners carry mirrored semantic tags
    flip = np.asarray(skel.flip_indices)
    assert flip.shape == (k,)
    assert sorted(flip.tolist()) == list(range(k))
    assert (flip[flip] == np.arange(k)).all()
    for i, j in enumerate(flip):
        assert skel.semantic[j] == vocab.mirror_of(skel.semantic[i]), (skel.keypoints[i], skel.keypoints[j])
        if i != j:  # names of partners differ only by left/right somewhere
            a, b = skel.keypoints[i], skel.keypoints[j]
            assert ("left" in a and "right" in b) or ("right" in a and "left" in b) or a.startswith("face"), (a, b)
    # per-keypoint arrays
    assert skel.sigmas.shape == (k,) and skel.sigmas.dtype == np.float32
    assert skel.joint_weights.shape == (k,)
    assert (skel.sigmas > 0).all() and (skel.joint_weights >= 0).all()
    assert not skel.sigmas.flags.writeable
    # links index valid keypoints, no self-links, no duplicates
    for a, b in skel.links:
        assert 0 <= a < k and 0 <= b < k and a != b
    assert len(set(map(frozenset, skel.links))) == len(skel.links)
    # half-body groups are disjoint and mirror-closed
    up, low = set(skel.upper_body), set(skel.lower_body)
    assert not up & low
    assert {int(flip[i]) for i in up} == up and {int(flip[i]) for i in low} == low


@pytest.mark.parametrize("name,count", sorted(EXPECTED_COUNTS.items()))
def test_known_counts(name, count):
    assert get_skeleton(name).num_keypoints == count


def test_mirror_vocabulary_symmetric():
    vocab = load_vocabulary()
    for tag in vocab.tags:
        assert vocab.mirror_of(vocab.mirror_of(tag)) == tag
    assert vocab.mirror_of("left_wrist") == "right_wrist"
    assert vocab.mirror_of("animal_left_eye") == "animal_right_eye"
    assert vocab.mirror_of("face_00") == "face_16"
    assert vocab.mirror_of("face_30") == "face_30"
    assert vocab.mirror_of("neck") == "neck"


def test_official_values_spot_checks():
    coco = get_skeleton("coco")
    assert coco.keypoints[0] == "nose" and coco.keypoints[16] == "right_ankle"
    np.testing.assert_allclose(coco.sigmas[[0, 5, 11, 16]], [0.026, 0.079, 0.107, 0.089], rtol=1e-6)
    assert coco.flip_indices == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert coco.upper_body == tuple(range(11)) and coco.lower_body == tuple(range(11, 17))

    mpii = get_skeleton("mpii")
    assert mpii.keypoints[:3] == ("right_ankle", "right_knee", "right_hip")
    assert mpii.keypoints[6:10] == ("pelvis", "thorax", "upper_neck", "head_top")
    assert mpii.flip_indices == (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)

    aic = get_skeleton("aic")
    assert aic.keypoints[12:] == ("head_top", "neck")
    np.testing.assert_allclose(aic.sigmas[[0, 6, 13]], [0.01388152, 0.03909642, 0.01236173], rtol=1e-6)

    wb = get_skeleton("coco_wholebody")
    assert wb.keypoints[17:23] == ("left_big_toe", "left_small_toe", "left_heel",
                                  "right_big_toe", "right_small_toe", "right_heel")
    assert wb.keypoints[23] == "face-0" and wb.keypoints[90] == "face-67"
    assert wb.keypoints[91] == "left_hand_root" and wb.keypoints[112] == "right_hand_root"
    assert wb.keypoints[132] == "right_pinky_finger4"
    np.testing.assert_allclose(wb.sigmas[[17, 20, 23, 70, 91, 132]], [0.068, 0.092, 0.042, 0.034, 0.029, 0.031],
                               rtol=1e-6)
    assert wb.flip_indices[23] == 39 and wb.flip_indices[91] == 112

    halpe = get_skeleton("halpe")
    assert halpe.keypoints[17:20] == ("head", "neck", "hip")
    assert halpe.keypoints[20:26] == ("left_big_toe", "right_big_toe", "left_small_toe",
                                      "right_small_toe", "left_heel", "right_heel")
    np.testing.assert_allclose(halpe.sigmas[[17, 20, 26, 135]], [0.08, 0.089, 0.015, 0.015], rtol=1e-6)

    ih = get_skeleton("interhand")
    assert ih.keypoints[0] == "thumb4" and ih.keypoints[20] == "wrist"
    oh = get_skeleton("onehand10k")
    # same joint gets the same sigma in both hand layouts
    for i, n in enumerate(oh.keypoints):
        assert ih.sigmas[ih.index(n)] == oh.sigmas[i]


def test_aliases():
    assert get_skeleton("3dpw") is get_skeleton("smpl24")
    assert get_skeleton("pw3d").name == "smpl24"
    assert get_skeleton("apt36k") is get_skeleton("ap10k")
    och = get_skeleton("ochuman")
    assert och.name == "ochuman" and och.keypoints == get_skeleton("coco").keypoints
    assert "3dpw" not in available_skeletons() and "3dpw" in available_skeletons(include_aliases=True)
    assert get_skeleton(och) is och


def test_unknown_skeleton_lists_known():
    with pytest.raises(SkeletonError) as exc:
        get_skeleton("cocoo")
    msg = str(exc.value)
    assert "cocoo" in msg and "coco_wholebody" in msg and "mpii" in msg and "Did you mean coco" in msg


def test_unified_layout_vitpose_plus_mix():
    layout = unified_layout(["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"])
    assert layout.total == 17 + 14 + 16 + 17 + 17 + 133 == 214
    assert layout.offsets == {"coco": 0, "aic": 17, "mpii": 31, "ap10k": 47, "apt36k": 64, "coco_wholebody": 81}
    assert layout.slice("coco_wholebody") == slice(81, 214)
    assert layout.skeletons["apt36k"] == "ap10k"


def test_unified_layout_duplicates_need_mapping():
    with pytest.raises(SkeletonError, match="appears twice"):
        unified_layout(["ap10k", "ap10k"])
    layout = unified_layout({"ap10k": "ap10k", "apt36k_set": "ap10k", "hands": "interhand"})
    assert layout.offsets == {"ap10k": 0, "apt36k_set": 17, "hands": 34} and layout.total == 55


def test_correspondence_matches_reference_table():
    # COCO -> MPII (0-based): l_shoulder 5->13, r_shoulder 6->12, l_wrist 9->15, r_ankle 16->0
    pairs = dict(correspondence("coco", "mpii"))
    assert pairs == {5: 13, 6: 12, 7: 14, 8: 11, 9: 15, 10: 10, 11: 3, 12: 2, 13: 4, 14: 1, 15: 5, 16: 0}
    # AIC/CrowdPose share head top and neck; MPII upper_neck/thorax are different points
    assert dict(correspondence("aic", "crowdpose"))[12] == 12 and dict(correspondence("aic", "crowdpose"))[13] == 13
    mpii_aic = dict(correspondence("mpii", "aic"))
    assert 9 in mpii_aic and 8 not in mpii_aic and 7 not in mpii_aic
    # Halpe feet (20..25) land on COCO-WholeBody feet (17..22) in the WholeBody order
    feet = {i: j for i, j in correspondence("halpe", "coco_wholebody") if 20 <= i <= 25}
    assert feet == {20: 17, 21: 20, 22: 18, 23: 21, 24: 19, 25: 22}
    # safe_only drops shoulders/hips/head top
    safe = dict(correspondence("coco", "mpii", safe_only=True))
    assert 5 not in safe and 11 not in safe and safe[9] == 15
    # animals never correspond to humans; single hands never to sided hands
    assert correspondence("coco", "ap10k") == []
    assert correspondence("onehand10k", "coco_wholebody") == []
    assert len(correspondence("onehand10k", "interhand")) == 21


# ------------------------------------------------------------------------------------------------
# user files and validation errors
# ------------------------------------------------------------------------------------------------


def _write(tmp_path: Path, data: dict, name: str = "custom.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _valid() -> dict:
    return {
        "name": "tiny3",
        "keypoints": [
            {"name": "head", "semantic": "head_top", "half": "upper"},
            {"name": "lw", "semantic": "left_wrist", "swap": "rw", "half": "upper"},
            {"name": "rw", "semantic": "right_wrist", "swap": "lw", "half": "upper"},
        ],
        "links": [["head", "lw"], ["head", 2]],
        "sigmas": [0.079, 0.062, 0.062],
    }


def test_load_user_file_and_register(tmp_path):
    path = _write(tmp_path, _valid())
    skel = load_skeleton_file(path)
    assert isinstance(skel, Skeleton)
    assert skel.flip_indices == (0, 2, 1) and skel.links == ((0, 1), (0, 2))
    np.testing.assert_array_equal(skel.joint_weights, [1, 1, 1])
    assert correspondence(skel, "mpii") == [(0, 9), (1, 15), (2, 10)]
    # by path, and registered by name
    assert get_skeleton(str(path)).keypoints == skel.keypoints
    data = _valid()
    data["name"] = "tiny3_registered_for_test"
    load_skeleton_file(_write(tmp_path, data, "reg.yaml"), register=True)
    assert "tiny3_registered_for_test" in available_skeletons()
    with pytest.raises(SkeletonError, match="already registered"):
        load_skeleton_file(_write(tmp_path, data, "reg2.yaml"), register=True)


def _mutate(fn):
    data = _valid()
    fn(data)
    return data


BAD_CASES = {
    "sigma_count": (lambda d: d.update(sigmas=[0.079, 0.062]), "'sigmas' has 2 values but the skeleton has 3"),
    "weight_count": (lambda d: d.update(joint_weights=[1.0]), "'joint_weights' has 1 values"),
    "negative_sigma": (lambda d: d.update(sigmas=[0.079, -0.1, 0.062]), "'sigmas'[1] must be > 0"),
    "swap_unknown": (lambda d: d["keypoints"][1].update(swap="rx"), "swap partner 'rx' is not a keypoint"),
    "swap_asymmetric": (lambda d: d["keypoints"][2].pop("swap"), "asymmetric swap"),
    "duplicate_name": (lambda d: d["keypoints"][2].update(name="lw", swap=None), "duplicate keypoint name 'lw'"),
    "unknown_tag": (lambda d: d["keypoints"][0].update(semantic="head_topp"), "unknown semantic tag 'head_topp'"),
    "duplicate_tag": (lambda d: d["keypoints"][0].update(semantic="left_wrist"), "already used"),
    "mirror_mismatch": (lambda d: d["keypoints"][2].update(semantic="right_elbow"), "mirrors to 'right_wrist'"),
    "unknown_field": (lambda d: d.update(sigma=[1, 2, 3]), "unknown field(s) ['sigma']"),
    "bad_link": (lambda d: d["links"].append(["head", "nose"]), "links[2]: 'nose' is not a keypoint"),
    "bad_half": (lambda d: d["keypoints"][0].update(half="top"), "field 'half'"),
    "count_mismatch": (lambda d: d.update(num_keypoints=4), "'num_keypoints' says 4"),
    "missing_sigmas": (lambda d: d.pop("sigmas"), "field 'sigmas' is missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_skeleton_files(tmp_path, case):
    fn, expected = BAD_CASES[case]
    path = _write(tmp_path, _mutate(fn), f"{case}.yaml")
    with pytest.raises(SkeletonError) as exc:
        load_skeleton_file(path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    assert expected in msg, msg


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nkeypoints: [\n")
    with pytest.raises(SkeletonError, match="not valid YAML"):
        load_skeleton_file(path)
    with pytest.raises(SkeletonError, match="not found"):
        load_skeleton_file(tmp_path / "nope.yaml")
