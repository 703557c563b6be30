"""Tests for the crop geometry (multipose.data.geometry) and TopDownTransform (multipose.data.transforms)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from multipose.data.geometry import box_to_center_scale, crop_to_image, get_warp_matrix, warp_points
from multipose.data.transforms import IMAGENET_MEAN, TopDownTransform

INPUT = (256, 192)  # (H, W)
# stand-in skeleton: 0 centre, (1 left, 2 right), (3 left, 4 right), 5 centre, (6 left, 7 right), ...
FLIP = (0, 2, 1, 4, 3, 5, 7, 6, 9, 8, 11, 10)
SKELETON = {"flip_indices": FLIP, "upper_body": (0, 1, 2, 3, 4, 5), "lower_body": (6, 7, 8, 9, 10, 11)}
STILL = dict(flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rot_prob=0.0, photometric=False)


def _instance(kpts, bbox, **kw):
    return SimpleNamespace(
        keypoints=np.asarray(kpts, np.float32),
        bbox=np.asarray(bbox, np.float32),
        center=None,
        scale=None,
        dataset="toy",
        image_path="toy.jpg",
        ann_id=7,
        **kw,
    )


def _colours(k):
    rng = np.random.default_rng(123)
    return rng.choice(np.arange(40, 250, 10), size=(k, 3), replace=True).astype(np.uint8)


def _dot_image(kpts, colours, shape=(480, 640), radius=4):
    img = np.zeros((*shape, 3), np.uint8)
    for (x, y, v), c in zip(kpts, colours):
        if v > 0:
            cv2.circle(img, (int(round(x)), int(round(y))), radius, tuple(int(t) for t in c), -1)
    return img


def _denorm(image_chw):
    mean = np.asarray(IMAGENET_MEAN)[:, None, None]
    std = np.asarray((0.229, 0.224, 0.225))[:, None, None]
    return ((image_chw * std + mean) * 255.0).transpose(1, 2, 0)


def _body_keypoints(rng):
    """12 labelled keypoints: upper body in the top half of a 200x300 box at (220, 90), lower in the bottom."""
    k = np.zeros((12, 3), np.float32)
    k[:6, 0], k[:6, 1] = rng.uniform(240, 400, 6), rng.uniform(110, 230, 6)
    k[6:, 0], k[6:, 1] = rng.uniform(240, 400, 6), rng.uniform(260, 370, 6)
    k[:, 2] = rng.choice([1, 2], 12)
    return k


BOX = (220.0, 90.0, 200.0, 300.0)


# ----------------------------------------------------------------------------------------------- geometry
def test_box_to_center_scale_fixes_aspect_and_pads():
    c, s = box_to_center_scale(np.array([[10, 20, 30, 80], [0, 0, 300, 100]]), 192 / 256, padding=1.25)
    np.testing.assert_allclose(c, [[25, 60], [150, 50]])
    np.testing.assert_allclose(s, [[75, 100], [375, 500]])  # tall box widened, wide box heightened
    np.testing.assert_allclose(s[:, 0] / s[:, 1], 0.75)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        box_to_center_scale([1, 2, 3], 0.75)


@pytest.mark.parametrize("rot", [0.0, 30.0, -65.0])
def test_classic_warp_matches_three_point_affine(rot):
    """The classic matrix equals cv2.getAffineTransform on mmpose's three-point construction."""
    center, scale = np.array([140.0, 210.0]), np.array([150.0, 200.0])
    out_h, out_w = INPUT
    t = np.deg2rad(rot)
    src_dir = np.array([0.5 * scale[0] * np.sin(t), -0.5 * scale[0] * np.cos(t)])  # (0, -w/2) rotated by t

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.float32([center, center + src_dir, third(center, center + src_dir)])
    dst_c = np.array([out_w * 0.5, out_h * 0.5])
    dst = np.float32([dst_c, dst_c + [0, -0.5 * out_w], third(dst_c, dst_c + [0, -0.5 * out_w])])
    ref = cv2.getAffineTransform(src, dst)
    np.testing.assert_allclose(get_warp_matrix(center, scale, rot, INPUT, use_udp=False), ref, atol=1e-4)


@pytest.mark.parametrize("use_udp", [True, False])
def test_warp_maps_box_onto_crop(use_udp):
    center, scale = np.array([300.0, 200.0]), np.array([120.0, 160.0])
    m = get_warp_matrix(center, scale, 0.0, INPUT, use_udp)
    pts = np.array([center, center - scale / 2, center + scale / 2])
    hi = np.array([191.0, 255.0]) if use_udp else np.array([192.0, 256.0])
    np.testing.assert_allclose(warp_points(pts, m), [hi / 2, [0, 0], hi], atol=1e-9)
    # rotation sign follows mmpose: UDP rotates a point above the centre to the right at +90 deg, classic left
    above = warp_points(np.array([[300.0, 150.0]]), get_warp_matrix(center, scale, 90.0, INPUT, use_udp))[0]
    assert (above[0] > hi[0] / 2 + 10) == use_udp and abs(above[1] - hi[1] / 2) < 1e-6


@pytest.mark.parametrize("use_udp", [True, False])
def test_crop_to_image_inverts_the_warp_batched(use_udp):
    rng = np.random.default_rng(0)
    boxes = np.stack(
        [rng.uniform(0, 500, 8), rng.uniform(0, 400, 8), rng.uniform(20, 300, 8), rng.uniform(20, 300, 8)],
        axis=1,
    )
    center, scale = box_to_center_scale(boxes, INPUT[1] / INPUT[0])
    pts = rng.uniform(-50, 700, size=(8, 17, 2))
    m = get_warp_matrix(center, scale, 0.0, INPUT, use_udp)  # [8, 2, 3]
    assert m.shape == (8, 2, 3)
    crop_pts = warp_points(pts, m)
    back = crop_to_image(crop_pts, center, scale, INPUT, use_udp)
    assert back.shape == (8, 17, 2) and back.dtype == np.float32
    assert np.abs(back - pts).max() < 1e-3
    back_t = crop_to_image(torch.from_numpy(crop_pts).double(), center, scale, INPUT, use_udp)
    assert isinstance(back_t, torch.Tensor) and (back_t.numpy() - pts).__abs__().max() < 1e-6
    # the other convention is off by a visible amount (guards against mixing them up)
    wrong = crop_to_image(crop_pts, center, scale, INPUT, not use_udp)
    assert np.abs(wrong - pts).max() > 0.5


@pytest.mark.parametrize("use_udp", [True, False])
def test_image_warp_and_point_warp_agree(use_udp):
    """cv2.warpAffine with our matrix moves image content exactly where warp_points moves the point."""
    img = np.zeros((400, 500), np.float32)
    p = np.array([231.0, 187.0])
    img[187, 231] = 1.0
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    m = get_warp_matrix(np.array([240.0, 200.0]), np.array([150.0, 200.0]), 25.0, INPUT, use_udp)
    crop = cv2.warpAffine(img, m, (INPUT[1], INPUT[0]), flags=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[: INPUT[0], : INPUT[1]]
    centroid = np.array([(crop * xs).sum(), (crop * ys).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, warp_points(p[None], m)[0], atol=0.05)


# ----------------------------------------------------------------------------------------------- transform
def test_output_format_and_normalisation():
    t = TopDownTransform(INPUT, SKELETON, train=False)
    img = np.empty((300, 400, 3), np.uint8)
    img[:] = np.round(np.asarray(IMAGENET_MEAN) * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    out = t(img, _instance(_body_keypoints(rng) * [0.5, 0.5, 1], (50, 30, 250, 250)))
    assert out["image"].shape == (3, 256, 192) and out["image"].dtype == np.float32
    assert out["keypoints"].shape == (12, 3) and out["keypoints"].dtype == np.float32
    assert out["center"].shape == (2,) and out["scale"].shape == (2,)
    assert out["rotation"] == 0.0 and out["flipped"] is False
    assert np.abs(out["image"][:, 100:150, 80:110]).max() < 0.02  # mean colour -> ~0 after normalisation
    assert out["image"][:, 0, 0].max() < -1.5  # black border outside the image (box padded past the top)


@pytest.mark.parametrize("use_udp", [True, False])
def test_val_transform_centres_the_box(use_udp):
    t = TopDownTransform(INPUT, SKELETON, train=False, use_udp=use_udp)
    k = np.zeros((12, 3), np.float32)
    k[0] = [320.0, 240.0, 2]  # the box centre
    k[1] = [250.0, 120.0, 1]
    img = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(img, (320, 240), 3, (255, 255, 255), -1)
    inst = _instance(k, (220, 90, 200, 300))
    out = t(img, inst)
    mid = np.array([95.5, 127.5]) if use_udp else np.array([96.0, 128.0])
    np.testing.assert_allclose(out["keypoints"][0], [*mid, 2], atol=1e-4)
    assert out["keypoints"][1, 2] == 1  # occluded stays occluded
    np.testing.assert_allclose(out["center"], [320, 240])
    np.testing.assert_allclose(out["scale"], [225 * 1.25, 300 * 1.25], rtol=1e-6)  # widened to 3:4, padded
    lum = _denorm(out["image"]).mean(-1)
    lum = np.where(lum > 60, lum, 0)
    ys, xs = np.mgrid[: INPUT[0], : INPUT[1]]
    np.testing.assert_allclose([(lum * xs).sum() / lum.sum(), (lum * ys).sum() / lum.sum()], mid, atol=0.3)
    out2 = t(img, inst)  # no randomness in validation
    assert np.array_equal(out["image"], out2["image"])


def test_keypoints_outside_crop_keep_their_label():
    """mmpose's TopDownAffine keeps v for keypoints outside the crop; the codec decides the weight."""
    t = TopDownTransform(INPUT, SKELETON, train=False)
    k = np.zeros((12, 3), np.float32)
    k[0] = [320, 240, 2]
    k[1] = [40, 240, 2]  # far left of the box
    k[2] = [320, 470, 1]  # below the padded box
    k[3] = [300, 200, 0]  # unlabelled
    k[4] = [200, 240, 1]  # outside the raw box but inside the padded crop
    out = t(np.zeros((480, 640, 3), np.uint8), _instance(k, (220, 90, 200, 300)))["keypoints"]
    np.testing.assert_array_equal(out[:5, 2], [2, 2, 1, 0, 1])  # before: [2, 0, 0, 0, 1]
    assert out[1, 0] < 0 and out[2, 1] > 255  # coordinates are kept
    np.testing.assert_array_equal(out[3], [0, 0, 0])


def test_same_seed_same_sample_different_seed_differs():
    rng = np.random.default_rng(5)
    k = _body_keypoints(rng)
    img = (np.random.default_rng(6).random((480, 640, 3)) * 255).astype(np.uint8)
    t = TopDownTransform(INPUT, SKELETON, train=True, photometric=True)
    inst = _instance(k, BOX)
    a = t(img, inst, np.random.default_rng(42))
    b = t(img, inst, np.random.default_rng(42))
    for key in ("image", "keypoints", "center", "scale"):
        assert np.array_equal(a[key], b[key]), key
    assert a["rotation"] == b["rotation"] and a["flipped"] == b["flipped"]
    others = [t(img, inst, np.random.default_rng(s)) for s in range(43, 48)]
    assert all(not np.array_equal(a["image"], o["image"]) for o in others)
    assert len({(o["rotation"], float(o["scale"][0])) for o in others}) == 5


def test_flip_swaps_left_and_right_partners():
    k = np.zeros((12, 3), np.float32)
    k[1] = [280, 200, 2]  # left partner of 2
    k[2] = [360, 210, 2]
    k[0] = [320, 150, 2]
    red, green, blue = (250, 0, 0), (0, 250, 0), (0, 0, 250)
    img = _dot_image(k[:3], np.array([blue, red, green]))
    t = TopDownTransform(INPUT, SKELETON, train=True, **{**STILL, "flip_prob": 1.0})
    out = t(img, _instance(k, BOX), np.random.default_rng(0))
    assert out["flipped"]
    crop = _denorm(out["image"])
    kp = out["keypoints"]
    colour_at = lambda j: crop[int(round(kp[j, 1])), int(round(kp[j, 0]))]  # noqa: E731
    np.testing.assert_allclose(colour_at(2), red, atol=3)  # the left dot now sits at the right index
    np.testing.assert_allclose(colour_at(1), green, atol=3)
    np.testing.assert_allclose(colour_at(0), blue, atol=3)
    assert kp[2, 0] > kp[1, 0]  # the red dot (left in the original, x=280) is now right of the green one...
    # ...while in the unflipped crop it is left of it
    plain = TopDownTransform(INPUT, SKELETON, train=False)(img, _instance(k, BOX))
    assert plain["keypoints"][1, 0] < plain["keypoints"][2, 0]
    np.testing.assert_allclose(out["center"], [640 - 1 - 320, 240])


def test_random_augmentations_keep_keypoints_on_their_pixels():
    """Every labelled output keypoint sits on the dot of its (flip-swapped) source keypoint."""
    k = np.zeros((12, 3), np.float32)
    rng = np.random.default_rng(9)
    k[:, 0] = 240 + 40 * np.arange(12) % 160 + rng.uniform(0, 3, 12)
    k[:, 1] = 110 + 22 * np.arange(12) + rng.uniform(0, 3, 12)
    k[:, 2] = 2
    colours = _colours(12)
    colours[:, 0] = np.arange(12) * 20 + 20  # red channel identifies the keypoint
    img = _dot_image(k, colours, radius=6)
    t = TopDownTransform(INPUT, SKELETON, train=True, photometric=False, half_body_prob=0.5)
    seen_flip = seen_rot = 0
    for seed in range(12):
        out = t(img, _instance(k, BOX), np.random.default_rng(seed))
        crop = _denorm(out["image"])
        src = np.asarray(FLIP) if out["flipped"] else np.arange(12)
        seen_flip += out["flipped"]
        seen_rot += out["rotation"] != 0
        kx, ky = out["keypoints"][:, 0], out["keypoints"][:, 1]
        on_crop = (kx >= 0) & (kx <= INPUT[1] - 1) & (ky >= 0) & (ky <= INPUT[0] - 1)
        for j in np.flatnonzero((out["keypoints"][:, 2] > 0) & on_crop):
            x, y = np.round(out["keypoints"][j, :2]).astype(int)
            assert abs(crop[y, x, 0] - colours[src[j], 0]) < 4, (seed, j)
    assert seen_flip > 0 and seen_rot > 0


def test_half_body_picks_upper_or_lower_subset():
    rng = np.random.default_rng(11)
    k = _body_keypoints(rng)
    upper_c, lower_c = k[:6, :2].mean(0), k[6:, :2].mean(0)
    t = TopDownTransform(INPUT, SKELETON, train=True, **{**STILL, "half_body_prob": 1.0})
    full = TopDownTransform(INPUT, SKELETON, train=False)(
        np.zeros((480, 640, 3), np.uint8), _instance(k, BOX)
    )
    picks = []
    for seed in range(60):
        out = t(np.zeros((480, 640, 3), np.uint8), _instance(k, BOX), np.random.default_rng(seed))
        if np.allclose(out["center"], upper_c, atol=1e-3):
            picks.append("upper")
            assert np.all(out["keypoints"][:6, 2] > 0)
        else:
            np.testing.assert_allclose(out["center"], lower_c, atol=1e-3)
            picks.append("lower")
            assert np.all(out["keypoints"][6:, 2] > 0)
        assert out["scale"][1] < full["scale"][1]
        np.testing.assert_allclose(out["scale"][0] / out["scale"][1], 0.75, rtol=1e-5)
    frac_upper = picks.count("upper") / len(picks)
    assert 0.5 < frac_upper < 0.9  # randn < 0.5 -> ~69 %
    # with <= 8 labelled keypoints the half-body transform never applies
    k_few = k.copy()
    k_few[8:, 2] = 0
    for seed in range(10):
        out = t(np.zeros((480, 640, 3), np.uint8), _instance(k_few, BOX), np.random.default_rng(seed))
        np.testing.assert_allclose(out["center"], [320, 240])


@pytest.mark.parametrize("factor", [0.5, 0.25])
def test_scale_and_rotation_ranges(factor):
    rng = np.random.default_rng(3)
    inst = _instance(_body_keypoints(rng), BOX)
    t = TopDownTransform(
        INPUT, SKELETON, train=True, flip_prob=0.0, half_body_prob=0.0, scale_factor=factor, photometric=False
    )
    img = np.zeros((64, 64, 3), np.uint8)  # geometry only; the image content does not matter here
    ratios, rots = [], []
    for seed in range(200):
        out = t(img, _instance(inst.keypoints, BOX), np.random.default_rng(seed))
        ratios.append(out["scale"][0] / (225 * 1.25))
        rots.append(out["rotation"])
    ratios, rots = np.array(ratios), np.array(rots)
    assert ratios.min() >= 1 - factor - 1e-6 and ratios.max() <= 1 + factor + 1e-6
    assert ratios.std() > factor / 3
    assert np.abs(rots).max() <= 80 and np.abs(rots).max() > 40
    assert 0.45 < np.mean(rots != 0) < 0.75  # rot_prob 0.6


def test_instance_center_scale_is_used():
    k = np.zeros((12, 3), np.float32)
    k[0] = [100, 100, 2]
    inst = _instance(k, BOX)
    inst.center, inst.scale = np.array([100.0, 100.0]), np.array([64.0, 64.0])  # square, as MPII provides
    out = TopDownTransform(INPUT, SKELETON, train=False)(np.zeros((200, 200, 3), np.uint8), inst)
    np.testing.assert_allclose(out["center"], [100, 100])
    np.testing.assert_allclose(out["scale"], [64, 64])
    np.testing.assert_allclose(out["keypoints"][0, :2], [95.5, 127.5], atol=1e-4)


def test_works_with_registry_skeleton():
    from multipose.skeletons.registry import get_skeleton

    sk = get_skeleton("coco")
    k = np.zeros((17, 3), np.float32)
    k[:, 0], k[:, 1], k[:, 2] = np.linspace(250, 390, 17), np.linspace(100, 380, 17), 2
    t = TopDownTransform(INPUT, sk, train=True, **{**STILL, "flip_prob": 1.0})
    out = t(np.zeros((480, 640, 3), np.uint8), _instance(k, BOX), np.random.default_rng(0))
    # left_eye (1) and right_eye (2) swapped, nose (0) kept: x' = W-1-x before the (identical) warp
    ref = TopDownTransform(INPUT, sk, train=False)
    kf = k[list(sk.flip_indices)].copy()
    kf[:, 0] = 639 - kf[:, 0]
    mirrored_box = (639 - 220 - 200, 90, 200, 300)  # centre 639 - 320
    expect = ref(np.zeros((480, 640, 3), np.uint8), _instance(kf, mirrored_box))
    np.testing.assert_allclose(out["keypoints"], expect["keypoints"], atol=1e-3)


def test_clear_errors():
    t = TopDownTransform(INPUT, SKELETON, train=True)
    inst = _instance(np.zeros((12, 3)), BOX)
    with pytest.raises(ValueError, match="uint8 RGB"):
        t(np.zeros((480, 640), np.uint8), inst, np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs rng"):
        t(np.zeros((480, 640, 3), np.uint8), inst)
    with pytest.raises(ValueError, match=r"\[12, 3\].*ann_id 7"):
        t(np.zeros((480, 640, 3), np.uint8), _instance(np.zeros((17, 3)), BOX), np.random.default_rng(0))
    with pytest.raises(ValueError, match="bbox.*ann_id 7"):
        t(
            np.zeros((480, 640, 3), np.uint8),
            _instance(np.zeros((12, 3)), (0, 0, 0, 10)),
            np.random.default_rng(0),
        )
    with pytest.raises(ValueError, match="unknown photometric op 'jpeg'"):
        TopDownTransform(INPUT, SKELETON, photometric={"jpeg": {"p": 1}})
    with pytest.raises(ValueError, match="flip_indices"):
        TopDownTransform(INPUT, {"flip_indices": (1, 2, 0)})


# ------------------------------------------------------------------------------ mmpose-fidelity details


def test_edge_keypoints_are_supervised_through_the_codec():
    """A keypoint a few pixels outside the crop keeps v and gets weight 1 with the Gaussian's tail on the map."""
    from multipose.data.codecs import build_codec

    t = TopDownTransform(INPUT, SKELETON, train=False, use_udp=True)
    codec = build_codec("udp", INPUT, (64, 48))
    k = np.zeros((12, 3), np.float32)
    k[:, :2] = [320, 240]
    k[:, 2] = 2
    c, s = box_to_center_scale(np.asarray(BOX), INPUT[1] / INPUT[0])
    x_left = c[0] - s[0] / 2  # image x of crop column 0
    k[1, 0] = x_left - 2.0 * 4 * s[0] / (INPUT[1] - 1)  # ~2 heatmap px left of the crop
    k[2, 0] = x_left - 12.0 * 4 * s[0] / (INPUT[1] - 1)  # ~12 heatmap px left: window off the map
    out = t(np.zeros((480, 640, 3), np.uint8), _instance(k, BOX))
    assert out["keypoints"][1, 0] < 0 and out["keypoints"][1, 2] == 2
    hm, w = codec.encode(out["keypoints"])
    np.testing.assert_array_equal(w[:3], [1, 1, 0])  # before this fix: [1, 0, 0]
    assert 0 < hm[1].max() < 1 and hm[1][:, 0].max() == hm[1].max()  # only the tail, at the left border


class _FixedNormal:
    """Stand-in generator: ``standard_normal`` returns a fixed value (drives the upper/lower choice)."""

    def __init__(self, value):
        self.value = value

    def standard_normal(self):
        return self.value


def test_half_body_lower_group_is_every_non_upper_joint():
    """COCO-WholeBody: with only face points below the shoulders, mmpose's lower group is the face (not empty)."""
    from multipose.skeletons import get_skeleton

    wb = get_skeleton("coco_wholebody")
    t = TopDownTransform(INPUT, wb, train=True, photometric=False)
    k = np.zeros((133, 3), np.float32)
    k[[5, 6, 0], :2] = [[300, 150], [340, 150], [320, 100]]  # 3 upper-body points
    k[23:40, 0] = np.linspace(300, 340, 17)  # face contour
    k[23:40, 1] = 120
    k[[5, 6, 0], 2] = 2
    k[23:40, 2] = 2
    centre, _ = t._half_body(k, _FixedNormal(1.0))  # randn >= 0.5: the lower group when it has > 2 points
    np.testing.assert_allclose(centre, k[23:40, :2].mean(axis=0))  # before: the upper group's mean
    centre_up, _ = t._half_body(k, _FixedNormal(0.0))
    np.testing.assert_allclose(centre_up, k[[0, 5, 6], :2].mean(axis=0))


def test_center_shift_known_answer_and_off_by_default():
    """mmpose TopDownRandomShiftBboxCenter: center += U(-1, 1, 2) * factor * scale (padded box, pixels)."""
    rng_k = np.random.default_rng(3)
    k = _body_keypoints(rng_k)
    img = np.zeros((480, 640, 3), np.uint8)
    c0, s0 = box_to_center_scale(np.asarray(BOX), INPUT[1] / INPUT[0])
    t = TopDownTransform(
        INPUT, SKELETON, train=True, center_shift_prob=1.0, center_shift_factor=0.16, **STILL
    )
    shifts = []
    for seed in range(40):
        out = t(img, _instance(k, BOX), np.random.default_rng(seed))
        ref = np.random.default_rng(seed)
        assert ref.random() < 1.0
        expected = c0 + ref.uniform(-1.0, 1.0, 2) * 0.16 * s0
        np.testing.assert_allclose(out["center"], expected, rtol=0, atol=1e-3)
        shifts.append((out["center"] - c0) / s0)
    shifts = np.asarray(shifts)
    assert np.abs(shifts).max() <= 0.16 + 1e-6 and shifts.min() < -0.08 and shifts.max() > 0.08
    # probability 0.3: about 30% of the samples move; probability 0 draws nothing (old samples unchanged)
    t3 = TopDownTransform(INPUT, SKELETON, train=True, center_shift_prob=0.3, **STILL)
    moved = [
        not np.allclose(t3(img, _instance(k, BOX), np.random.default_rng(s))["center"], c0)
        for s in range(200)
    ]
    assert 0.2 < np.mean(moved) < 0.4
    t0 = TopDownTransform(INPUT, SKELETON, train=True, photometric=False)
    t_off = TopDownTransform(INPUT, SKELETON, train=True, photometric=False, center_shift_prob=0.0)
    a = t0(img, _instance(k, BOX), np.random.default_rng(11))
    b = t_off(img, _instance(k, BOX), np.random.default_rng(11))
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    with pytest.raises(ValueError, match="center_shift_prob"):
        TopDownTransform(INPUT, SKELETON, center_shift_prob=1.5)
    with pytest.raises(ValueError, match="center_shift_factor"):
        TopDownTransform(INPUT, SKELETON, center_shift_factor=-0.1)


def _mmpose_sanitize(x, y, w, h, width, height):
    """mmpose 0.x TopDownCocoDataset._load_coco_keypoint_annotation_kernel, re-derived: valid + clean_bbox."""
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
    return (x2 > x1 and y2 > y1), [x1, y1, x2 - x1, y2 - y1]


@pytest.mark.parametrize(
    "box",
    [
        (10.0, 20.0, 100.0, 200.0),  # inside: loses one pixel, centre -0.5 px
        (-50.0, 30.0, 100.0, 50.0),  # starts left of the image: shifted right, width kept
        (600.0, 0.0, 100.0, 100.0),  # runs off the right edge: x2 = W - 1
        (700.0, 10.0, 10.0, 10.0),  # entirely outside: invalid
        (5.5, 7.25, 0.5, 30.0),  # narrower than a pixel: invalid
    ],
)
def test_sanitize_box_matches_mmpose(box):
    from multipose.data.formats._common import box_is_valid, clip_box
    from multipose.data.geometry import sanitize_box

    valid, clean = _mmpose_sanitize(*box, 640, 480)
    got = sanitize_box(box, 640, 480)
    np.testing.assert_allclose(got, clean)
    assert box_is_valid(got) == valid
    assert clip_box(box, 640, 480) == got  # what the COCO-style readers use


def test_sanitized_box_centre_and_scale():
    """Known answer: [10, 20, 100, 200] -> clean [10, 20, 99, 199] -> centre (59.5, 119.5), mmpose _xywh2cs."""
    from multipose.data.geometry import sanitize_box

    clean = sanitize_box((10.0, 20.0, 100.0, 200.0), 640, 480)
    assert clean == (10.0, 20.0, 99.0, 199.0)
    c, s = box_to_center_scale(np.asarray(clean), 192 / 256, padding=1.25)
    np.testing.assert_allclose(c, [59.5, 119.5])  # the old clip gave (60, 120)
    np.testing.assert_allclose(s, [199 * 0.75 * 1.25, 199 * 1.25], rtol=1e-6)
    assert sanitize_box((10.0, 20.0, 100.0, 200.0), 640, 480, convention="clip") == (10.0, 20.0, 100.0, 200.0)
    with pytest.raises(ValueError, match="convention"):
        sanitize_box((0, 0, 1, 1), 10, 10, convention="xyxy")


def test_center_shift_is_on_in_full_mix_only():
    from conftest import compose
    from multipose.data.datamodule import AUGMENTATION_KEYS

    cfg = compose("train", ["+experiment=full_mix"])
    aug = dict(cfg.data.augmentation)
    assert aug == {"center_shift_prob": 0.3, "center_shift_factor": 0.16}
    assert set(aug) <= AUGMENTATION_KEYS
    for data in ("synthetic", "synthetic_small", "synthetic_ablation"):
        other = compose("train", [f"data={data}"]).data.get("augmentation") or {}
        assert float(other.get("center_shift_prob", 0.0)) == 0.0, data


def test_mapping_skeleton_without_lower_group_gets_the_complement():
    t = TopDownTransform(INPUT, {"flip_indices": FLIP, "upper_body": (0, 1, 2)}, train=False)
    assert t.lower_body == tuple(range(3, 12))
    assert TopDownTransform(INPUT, {"flip_indices": FLIP}, train=False).lower_body == ()


def test_center_shift_leaves_annotated_centres_alone():
    """MPII-style instances (centre/scale from the annotation) are not jittered, as in ViTPose/mmpose."""
    k = _body_keypoints(np.random.default_rng(4))
    t = TopDownTransform(INPUT, SKELETON, train=True, center_shift_prob=1.0, **STILL)
    inst = _instance(k, BOX)
    inst.center, inst.scale = np.array([320.0, 240.0]), np.array([240.0, 320.0])
    for seed in range(5):
        np.testing.assert_allclose(
            t(np.zeros((480, 640, 3), np.uint8), inst, np.random.default_rng(seed))["center"], [320.0, 240.0]
        )


def test_supervised_share_script_counts(tiny_world):
    """scripts/supervised_share.py: keeping edge labels never lowers the supervised share, and it raises it."""
    import importlib.util

    from conftest import REPO
    from multipose.data.config import parse_entry
    from multipose.data.datamodule import filter_train_instances, read_split
    from multipose.data.synthetic import WorldConfig, world_datasets
    from multipose.skeletons import get_skeleton

    spec_file = importlib.util.spec_from_file_location(
        "supervised_share", REPO / "scripts" / "supervised_share.py"
    )
    mod = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(mod)
    spec = next(d for d in world_datasets("tiny") if d.name == "syn_coco")
    entry = parse_entry(spec.name, spec.as_config(), str(tiny_world))
    skel = get_skeleton(entry.skeleton)
    instances = filter_train_instances(read_split(entry, "train", skel), spec.name, entry.train.ann_file)
    sizes = [tuple(WorldConfig.preset("tiny").image_size)] * len(instances)
    c = mod.supervised_share(entry, skel, instances, sizes, (256, 192), (64, 48), samples=60)
    assert c["labelled"] > 0
    assert c["before"] <= c["window"] <= c["mmpose"] <= c["labelled"]
    assert c["mmpose"] > c["before"]
