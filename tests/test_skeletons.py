"""Skeleton registry: every shipped YAML is consistent, lookups and layouts work, bad files fail clearly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from multipose.skeletons import (
    Skeleton,
    SkeletonError,
    active_vocabulary,
    available_skeletons,
    correspondence,
    get_skeleton,
    load_skeleton_dirs,
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
    "animalpose": 20,
}


def test_skeleton_files_found():
    names = {p.stem for p in SKELETON_FILES}
    assert {"coco", "aic", "mpii", "crowdpose", "coco_wholebody", "halpe", "ap10k", "ochuman"} <= names
    assert {"onehand10k", "interhand", "smpl24"} <= names


@pytest.mark.parametrize("path", SKELETON_FILES, ids=lambda p: p.stem)
def test_every_skeleton_file_is_consistent(path: Path):
    skel = load_skeleton_file(path)
    vocab = active_vocabulary()
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
            assert ("left" in a and "right" in b) or ("right" in a and "left" in b) or a.startswith("face"), (
                a,
                b,
            )
    # per-keypoint arrays
    assert skel.sigmas.shape == (k,) and skel.sigmas.dtype == np.float32
    assert skel.joint_weights.shape == (k,)
    assert (skel.sigmas > 0).all() and (skel.joint_weights >= 0).all()
    assert not skel.sigmas.flags.writeable
    # links index valid keypoints, no self-links, no duplicates
    for a, b in skel.links:
        assert 0 <= a < k and 0 <= b < k and a != b
    assert len(set(map(frozenset, skel.links))) == len(skel.links)
    # half-body groups: "lower" is everything not "upper" (mmpose); mirror-closed except AP-10K's official
    # right front paw typed 'lower'
    up, low = set(skel.upper_body), set(skel.lower_body)
    assert not up & low
    assert up | low == (set(range(k)) if up else set())
    if skel.name != "ap10k":
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
    assert wb.keypoints[17:23] == (
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
    )
    assert wb.keypoints[23] == "face-0" and wb.keypoints[90] == "face-67"
    assert wb.keypoints[91] == "left_hand_root" and wb.keypoints[112] == "right_hand_root"
    assert wb.keypoints[132] == "right_pinky_finger4"
    np.testing.assert_allclose(
        wb.sigmas[[17, 20, 23, 70, 91, 132]], [0.068, 0.092, 0.042, 0.034, 0.029, 0.031], rtol=1e-6
    )
    assert wb.flip_indices[23] == 39 and wb.flip_indices[91] == 112

    halpe = get_skeleton("halpe")
    assert halpe.keypoints[17:20] == ("head", "neck", "hip")
    assert halpe.keypoints[20:26] == (
        "left_big_toe",
        "right_big_toe",
        "left_small_toe",
        "right_small_toe",
        "left_heel",
        "right_heel",
    )
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
    assert layout.offsets == {
        "coco": 0,
        "aic": 17,
        "mpii": 31,
        "ap10k": 47,
        "apt36k": 64,
        "coco_wholebody": 81,
    }
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
    assert (
        dict(correspondence("aic", "crowdpose"))[12] == 12
        and dict(correspondence("aic", "crowdpose"))[13] == 13
    )
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
    "sigma_count": (
        lambda d: d.update(sigmas=[0.079, 0.062]),
        "'sigmas' has 2 values but the skeleton has 3",
    ),
    "weight_count": (lambda d: d.update(joint_weights=[1.0]), "'joint_weights' has 1 values"),
    "negative_sigma": (lambda d: d.update(sigmas=[0.079, -0.1, 0.062]), "'sigmas'[1] must be > 0"),
    "swap_unknown": (lambda d: d["keypoints"][1].update(swap="rx"), "swap partner 'rx' is not a keypoint"),
    "swap_asymmetric": (lambda d: d["keypoints"][2].pop("swap"), "asymmetric swap"),
    "duplicate_name": (
        lambda d: d["keypoints"][2].update(name="lw", swap=None),
        "duplicate keypoint name 'lw'",
    ),
    "unknown_tag": (
        lambda d: d["keypoints"][0].update(semantic="head_topp"),
        "unknown semantic tag 'head_topp'",
    ),
    "duplicate_tag": (lambda d: d["keypoints"][0].update(semantic="left_wrist"), "already used"),
    "mirror_mismatch": (
        lambda d: d["keypoints"][2].update(semantic="right_elbow"),
        "mirrors to 'right_wrist'",
    ),
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


# ------------------------------------------------------------------------------------------------
# sigmas pinned to the official evaluation code of each dataset
# ------------------------------------------------------------------------------------------------

# fmt: off
# COCO: cocoapi PythonAPI/pycocotools/cocoeval.py (Params.setKpParams, kpt_oks_sigmas).
COCO_SIGMAS = [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
COCO_SIGMAS = [v / 10.0 for v in COCO_SIGMAS]
# COCO-WholeBody: jin-s13/COCO-WholeBody evaluation/myeval_wholebody.py (sigmas_body/foot/face/lefthand/righthand).
WB_FOOT = [0.068, 0.066, 0.066, 0.092, 0.094, 0.094]
WB_FACE = [
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043,
    0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007,
    0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011,
    0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008,
]
WB_HAND = [
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021,
    0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
]
OFFICIAL_SIGMAS = {
    "coco": COCO_SIGMAS,
    # OCHuman is evaluated with the COCO tools and sigmas (mmpose ochuman.py).
    "ochuman": COCO_SIGMAS,
    # AI Challenger: keypoint_eval.py (delta = 2 * sigma), as in mmpose aic.py; empirical, left/right differ.
    "aic": [0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642, 0.03686941,
            0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173],
    # CrowdPose: crowdposetools/cocoeval.py (COCO limb values, .79 for head top and neck).
    "crowdpose": [v / 10.0 for v in (.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79)],
    "coco_wholebody": COCO_SIGMAS + WB_FOOT + WB_FACE + WB_HAND + WB_HAND,
    # AP-10K: AlexTheBad/AP-10K configs/_base_/datasets/ap10k.py (= ViTPose ap10k_info.py); APT-36K uses it too.
    "ap10k": [.025, .025, .026, .035, .035, .079, .072, .062, .079, .072, .062, .107, .087, .089, .107, .087, .089],
    "apt36k": [.025, .025, .026, .035, .035, .079, .072, .062, .079, .072, .062, .107, .087, .089, .107, .087,
               .089],
    # Halpe-FullBody: HalpeCOCOAPI halpecocotools/cocoeval.py (COCO body, .08 head/neck/hip, .089 feet, .015 rest).
    "halpe": COCO_SIGMAS + [0.08] * 3 + [0.089] * 6 + [0.015] * 110,
    # Animal-Pose has no official sigmas; mmpose animalpose.py is the reference every published AP uses.
    "animalpose": [0.025, 0.025, 0.026, 0.035, 0.035, 0.10, 0.10, 0.10, 0.107, 0.107, 0.107, 0.107, 0.087, 0.087,
                   0.087, 0.087, 0.089, 0.089, 0.089, 0.089],
    # MPII is scored with PCKh and has no OKS sigmas; mmpose mpii.py ships these (used for OKS-NMS only).
    "mpii": [0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179,
             0.072, 0.062],
    # OneHand10K: no official sigmas (PCK/AUC/EPE); the COCO-WholeBody hand sigmas, same joint order.
    "onehand10k": WB_HAND,
}
# No official or de-facto values at all: the YAML documents its own choice (still checked for symmetry).
# fmt: on
NO_OFFICIAL_SIGMAS = {"smpl24", "3dpw", "interhand"}


def test_every_skeleton_is_classified_for_sigmas():
    """A new skeleton must either get its official sigmas pinned here or be listed as having none."""
    names = set(available_skeletons(include_aliases=True)) & (
        set(EXPECTED_COUNTS) | {p.stem for p in SKELETON_FILES}
    )
    assert names <= set(OFFICIAL_SIGMAS) | NO_OFFICIAL_SIGMAS, (
        names - set(OFFICIAL_SIGMAS) - NO_OFFICIAL_SIGMAS
    )


@pytest.mark.parametrize("name", sorted(OFFICIAL_SIGMAS))
def test_sigmas_match_the_official_evaluation_code(name):
    np.testing.assert_allclose(get_skeleton(name).sigmas, OFFICIAL_SIGMAS[name], rtol=0, atol=1e-7)


def test_interhand_sigmas_are_the_wholebody_hand_sigmas_by_joint_name():
    oh, ih = get_skeleton("onehand10k"), get_skeleton("interhand")
    for i, n in enumerate(oh.keypoints):
        assert ih.sigmas[ih.index(n)] == pytest.approx(WB_HAND[i])


def test_ap10k_sigmas_are_left_right_symmetric_and_half_body_is_official():
    ap = get_skeleton("ap10k")
    for i, j in ap.flip_pairs:
        assert ap.sigmas[i] == ap.sigmas[j], (ap.keypoints[i], ap.keypoints[j])
    # official dataset info types the right front paw (10) 'lower'; lower = every joint not upper
    assert ap.upper_body == (0, 1, 2, 3, 5, 6, 7, 8, 9)
    assert ap.lower_body == (4, 10, 11, 12, 13, 14, 15, 16)


def test_wholebody_lower_group_includes_face_and_hands():
    wb = get_skeleton("coco_wholebody")
    assert wb.upper_body == tuple(range(11))
    assert wb.lower_body == tuple(range(11, 133)) and len(wb.lower_body) == 122


def test_swapped_sigmas_fail_at_load_time_with_file_pair_and_fix(tmp_path):
    data = _valid()
    data["sigmas"] = [0.079, 0.062, 0.072]  # lw / rw differ
    path = _write(tmp_path, data, "swapped.yaml")
    with pytest.raises(SkeletonError) as exc:
        load_skeleton_file(path)
    msg = str(exc.value)
    assert str(path) in msg and "'lw' (index 1" in msg and "'rw' (index 2" in msg
    assert "sigmas_asymmetry: official" in msg
    data["sigmas_asymmetry"] = "official"
    assert load_skeleton_file(_write(tmp_path, data, "marked.yaml")).sigmas[2] == pytest.approx(0.072)
    # the marker must be true: symmetric sigmas + marker is an error, and only 'official' is accepted
    data["sigmas"] = [0.079, 0.062, 0.062]
    with pytest.raises(SkeletonError, match="remove the field"):
        load_skeleton_file(_write(tmp_path, data, "false_marker.yaml"))
    data["sigmas_asymmetry"] = "yes"
    with pytest.raises(SkeletonError, match="must be 'official'"):
        load_skeleton_file(_write(tmp_path, data, "bad_marker.yaml"))


def test_old_ap10k_sigmas_would_be_rejected(tmp_path):
    """The list shipped before (COCO's copied by index) fails the symmetry check."""
    raw = yaml.safe_load((SKELETON_DIR / "ap10k.yaml").read_text())
    raw["name"] = "ap10k_old_copy"
    raw["aliases"] = []
    raw["sigmas"] = [
        0.025,
        0.025,
        0.026,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ]
    with pytest.raises(
        SkeletonError, match="'left_shoulder' \\(index 5, sigma 0.079\\) and 'right_shoulder'"
    ):
        load_skeleton_file(_write(tmp_path, raw, "ap10k_old.yaml"))


# ------------------------------------------------------------------------------------------------
# user skeletons: new semantic tags, skeleton directories, AnimalPose
# ------------------------------------------------------------------------------------------------


def _user_skeleton(name: str, prefix: str) -> dict:
    return {
        "name": name,
        "keypoints": [
            {"name": "withers", "semantic": f"{prefix}_withers", "half": "upper"},
            {"name": "l_horn", "semantic": f"{prefix}_left_horn", "swap": "r_horn", "half": "upper"},
            {"name": "r_horn", "semantic": f"{prefix}_right_horn", "swap": "l_horn", "half": "upper"},
            {"name": "tail", "semantic": "animal_tail_root"},
        ],
        "sigmas": [0.079, 0.05, 0.05, 0.079],
    }


def test_user_skeleton_declares_new_tags_inline(tmp_path):
    data = _user_skeleton("goat_inline_for_test", "goatinl")
    data["tags"] = {
        "goatinl_withers": {"desc": "goat withers"},
        "goatinl_left_horn": {"desc": "goat left horn tip", "vote": "approx"},
        "goatinl_right_horn": {"desc": "goat right horn tip", "vote": "approx"},
    }
    skel = load_skeleton_file(_write(tmp_path, data, "goat.yaml"), register=True)
    assert skel.flip_indices == (0, 2, 1, 3)
    assert skel.upper_body == (0, 1, 2) and skel.lower_body == (3,)
    vocab = active_vocabulary()
    assert vocab.mirror_of("goatinl_left_horn") == "goatinl_right_horn"
    assert vocab.where("goatinl_withers").endswith("goat.yaml")
    assert "goatinl_withers" not in load_vocabulary()  # the package file is untouched
    assert correspondence("goat_inline_for_test", "ap10k") == [(3, 4)]  # shared tag: root of tail
    assert correspondence("goat_inline_for_test", "goat_inline_for_test", safe_only=True) == [(0, 0), (3, 3)]


def test_user_tags_conflicts_and_missing_tags_are_clear(tmp_path):
    data = _user_skeleton("goat_missing_for_test", "goatmiss")
    with pytest.raises(SkeletonError, match="declare the new tag under 'tags:'"):
        load_skeleton_file(_write(tmp_path, data, "missing.yaml"))
    data["tags"] = {"left_wrist": {"desc": "something else"}}
    with pytest.raises(SkeletonError, match="tag 'left_wrist' is already defined"):
        load_skeleton_file(_write(tmp_path, data, "conflict.yaml"))
    data["tags"] = {"goatmiss_left_horn": {"desc": "no right partner"}}
    with pytest.raises(SkeletonError, match="mirrors to 'goatmiss_right_horn'"):
        load_skeleton_file(_write(tmp_path, data, "unpaired.yaml"))


def test_skeleton_dirs_with_a_vocabulary_file(tmp_path):
    folder = tmp_path / "my_skeletons"
    folder.mkdir()
    (folder / "vocabulary.yaml").write_text(
        yaml.safe_dump(
            {
                "tags": {
                    "goatdir_withers": {"desc": "goat withers"},
                    "goatdir_left_horn": {"desc": "left horn"},
                    "goatdir_right_horn": {"desc": "right horn"},
                }
            }
        )
    )
    _write(folder, _user_skeleton("goat_dir_for_test", "goatdir"), "goat.yaml")
    _write(folder, {"name": "goat_dir_alias_for_test", "alias_of": "goat_dir_for_test"}, "goat_alias.yml")
    loaded = load_skeleton_dirs([str(folder)])
    assert {s.name for s in loaded} == {"goat_dir_for_test", "goat_dir_alias_for_test"}
    assert get_skeleton("goat_dir_alias_for_test").keypoints == get_skeleton("goat_dir_for_test").keypoints
    assert load_skeleton_dirs(folder)  # loading the same folder again is harmless
    with pytest.raises(SkeletonError, match="skeleton directory .* does not exist.*data.skeleton_dirs"):
        load_skeleton_dirs([tmp_path / "nope"])


def test_animalpose_is_shipped_with_official_layout():
    ap = get_skeleton("animalpose")
    assert ap.num_keypoints == 20 and get_skeleton("animal_pose") is ap
    assert ap.keypoints[:8] == (
        "left_eye",
        "right_eye",
        "left_ear_base",
        "right_ear_base",
        "nose",
        "throat",
        "tail_base",
        "withers",
    )
    assert ap.keypoints[-4:] == ("left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw")
    # mmpose flip pairs (0-based): (0,1) (2,3) (8,9) (10,11) (12,13) (14,15) (16,17) (18,19)
    assert ap.flip_pairs == ((0, 1), (2, 3), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19))
    assert len(ap.links) == 20
    assert ap.lower_body == (6, 10, 11, 14, 15, 18, 19)
    # shared with AP-10K only where the definitions agree
    assert correspondence("animalpose", "ap10k") == [
        (0, 0),
        (1, 1),
        (4, 2),
        (6, 4),
        (16, 7),
        (17, 10),
        (18, 13),
        (19, 16),
    ]


def test_data_config_skeleton_dirs(tmp_path):
    from multipose.data.config import DataConfigError, parse_dataset_entries

    folder = tmp_path / "skeletons"
    folder.mkdir()
    data = _user_skeleton("goat_cfg_for_test", "goatcfg")
    data["tags"] = {f"goatcfg_{t}": {"desc": t} for t in ("withers", "left_horn", "right_horn")}
    _write(folder, data, "goat.yaml")
    entry = {
        "format": "coco",
        "skeleton": "goat_cfg_for_test",
        "batch_count": 2,
        "train": {"ann_file": "a.json", "img_dir": "img"},
        "val": {"ann_file": "b.json", "img_dir": "img"},
    }
    with pytest.raises(DataConfigError, match="unknown skeleton 'goat_cfg_for_test'"):
        parse_dataset_entries({"goats": entry}, str(tmp_path), "fixed", 2)
    entries = parse_dataset_entries({"goats": entry}, str(tmp_path), "fixed", 2, skeleton_dirs=[str(folder)])
    assert get_skeleton(entries["goats"].skeleton).num_keypoints == 4
    with pytest.raises(DataConfigError, match="data.skeleton_dirs: skeleton directory"):
        parse_dataset_entries(
            {"goats": entry}, str(tmp_path), "fixed", 2, skeleton_dirs=[str(tmp_path / "x")]
        )
    with pytest.raises(DataConfigError, match="must be a list of folder paths"):
        parse_dataset_entries({"goats": entry}, str(tmp_path), "fixed", 2, skeleton_dirs=[3])


def test_alias_file_shares_every_field_of_its_skeleton_but_its_names(tmp_path):
    (tmp_path / "coco_alias.yaml").write_text(
        yaml.safe_dump(
            {"name": "coco_alias_for_test", "alias_of": "coco", "aliases": ["coco_alias_b_for_test"]}
        )
    )
    alias, base = load_skeleton_file(tmp_path / "coco_alias.yaml"), get_skeleton("coco")
    own = {"name", "aliases", "source", "description"}
    for f in dataclasses.fields(Skeleton):
        if f.name not in own:
            assert getattr(alias, f.name) is getattr(base, f.name), f.name
    assert (alias.name, alias.aliases) == ("coco_alias_for_test", ("coco_alias_b_for_test",))
    assert alias.source == str(tmp_path / "coco_alias.yaml") and alias.description == "alias of coco"


def test_the_registry_module_still_serves_its_old_names():
    """``multipose.skeletons.registry`` was split into modules with one job; the names other code imports from it
    (``models.prompt_tokens`` uses ``_default_mirror``) are the same objects as in the new modules."""
    import multipose.skeletons as pkg
    from multipose.skeletons import registry, vocabulary

    for name in ("Skeleton", "SkeletonError", "Vocabulary", "load_vocabulary", "get_skeleton"):
        assert getattr(registry, name) is getattr(pkg, name), name
    assert registry._default_mirror is vocabulary.default_mirror
    assert registry._default_mirror("left_big_toe") == "right_big_toe"
    assert registry.extend_vocabulary is vocabulary.extend_vocabulary
