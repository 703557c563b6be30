"""Tests for the UDP / MSRA heatmap codecs (multipose.data.codecs)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from multipose.data.codecs import MSRAHeatmap, UDPHeatmap, available_codecs, build_codec

INPUT = (256, 192)  # (H, W)
HEATMAP = (64, 48)
# a left/right pairing for 6 keypoints: 0 centre, (1, 2), (3, 4), 5 centre
FLIP = [0, 2, 1, 4, 3, 5]


def _interior_keypoints(codec, n, rng, margin_hm=6.0):
    """Random sub-pixel keypoints whose 3-sigma window (and blur support) lies inside the heatmap."""
    sx, sy = codec.stride
    hh, hw = codec.heatmap_size
    k = np.zeros((n, 3), np.float32)
    k[:, 0] = rng.uniform(margin_hm * sx, (hw - 1 - margin_hm) * sx, n)
    k[:, 1] = rng.uniform(margin_hm * sy, (hh - 1 - margin_hm) * sy, n)
    k[:, 2] = 2
    return k


def _reference_dark_udp(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """Straightforward full-map DARK-UDP (cv2 blur of every map, edge pad, Newton step) in heatmap px."""
    b, k, h, w = heatmaps.shape
    out = np.zeros((b, k, 2))
    for i in range(b):
        for j in range(k):
            hm = heatmaps[i, j]
            y, x = np.unravel_index(np.argmax(hm), hm.shape)
            lg = np.log(np.clip(cv2.GaussianBlur(hm, (kernel, kernel), 0), 0.001, 50))
            p = np.pad(lg, 1, mode="edge")
            y1, x1 = y + 1, x + 1
            grad = np.array([0.5 * (p[y1, x1 + 1] - p[y1, x1 - 1]), 0.5 * (p[y1 + 1, x1] - p[y1 - 1, x1])])
            dxx = p[y1, x1 + 1] - 2 * p[y1, x1] + p[y1, x1 - 1]
            dyy = p[y1 + 1, x1] - 2 * p[y1, x1] + p[y1 - 1, x1]
            # mmpose post_dark_udp's mixed derivative (uses the (+1,+1) and (-1,-1) corners only)
            dxy = 0.5 * (
                p[y1 + 1, x1 + 1]
                - p[y1, x1 + 1]
                - p[y1 + 1, x1]
                + 2 * p[y1, x1]
                - p[y1, x1 - 1]
                - p[y1 - 1, x1]
                + p[y1 - 1, x1 - 1]
            )
            hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
            out[i, j] = np.array([x, y]) - np.linalg.solve(hess, grad)
    return out


def test_build_codec_names_and_strides():
    udp = build_codec("UDP", INPUT, HEATMAP)
    msra = build_codec("msra", INPUT, HEATMAP, sigma=3.0, use_dark=True)
    assert isinstance(udp, UDPHeatmap) and isinstance(msra, MSRAHeatmap) and msra.use_dark
    np.testing.assert_allclose(udp.stride, [191 / 47, 255 / 63])
    np.testing.assert_allclose(msra.stride, [4.0, 4.0])
    assert available_codecs() == ["msra", "udp"]
    with pytest.raises(ValueError, match="unknown heatmap codec 'dark'.*msra.*udp"):
        build_codec("dark", INPUT, HEATMAP)
    with pytest.raises(ValueError, match="bad option"):
        build_codec("udp", INPUT, HEATMAP, use_dark=True)
    with pytest.raises(ValueError, match="heatmap_size"):
        build_codec("udp", INPUT, (64,))


def test_udp_round_trip_subpixel():
    rng = np.random.default_rng(0)
    codec = build_codec("udp", INPUT, HEATMAP)
    kpts = _interior_keypoints(codec, 300, rng)
    hm, w = codec.encode(kpts)
    assert hm.shape == (300, 64, 48) and hm.dtype == np.float32 and np.all(w == 1)
    assert hm.max() <= 1.0 and hm.max() > 0.9  # unnormalised Gaussian
    coords, scores = codec.decode(hm[None])
    err = np.abs(coords[0] - kpts[:, :2])
    assert err.max() < 0.01, err.max()  # spec asks 0.1 px; observed ~2e-4 px
    np.testing.assert_allclose(scores[0], hm.reshape(300, -1).max(1))


@pytest.mark.parametrize("use_dark", [False, True])
def test_msra_round_trip_quantised(use_dark):
    """MSRA centres the Gaussian on the rounded heatmap pixel: the error is bounded by stride / 2."""
    rng = np.random.default_rng(1)
    codec = build_codec("msra", INPUT, HEATMAP, use_dark=use_dark)
    kpts = _interior_keypoints(codec, 300, rng)
    hm, _ = codec.encode(kpts)
    coords, _ = codec.decode(hm[None])
    err = np.abs(coords[0] - kpts[:, :2])
    assert err.max() <= 0.5 * 4.0 + 1e-4
    # decoding an MSRA target lands exactly on the integer grid (symmetric peak: no shift, no DARK offset)
    np.testing.assert_allclose(coords[0] / 4.0, np.round(coords[0] / 4.0), atol=1e-3)


def test_dark_udp_matches_full_map_reference():
    rng = np.random.default_rng(2)
    noise = rng.random((2, 5, 64, 48)).astype(np.float32)
    smooth = np.stack([[cv2.GaussianBlur(m, (0, 0), 3) for m in s] for s in noise])
    # one peak pushed against each border to exercise the reflect-101 blur border and the edge padding
    codec = build_codec("udp", INPUT, HEATMAP)
    border = np.array([[0.0, 120.0, 2], [191.0, 40.0, 2], [80.0, 0.0, 2], [60.0, 255.0, 2], [3.0, 3.0, 2]])
    smooth[1] += 2.0 * codec.encode(border)[0]
    coords, _ = codec.decode(smooth)
    ref = _reference_dark_udp(smooth) * codec.stride
    np.testing.assert_allclose(coords, ref, atol=2e-3)


def test_msra_quarter_shift_and_border_rule():
    codec = build_codec("msra", INPUT, HEATMAP)
    hm = np.zeros((1, 3, 64, 48), np.float32)
    hm[0, 0, 10, 10], hm[0, 0, 10, 11], hm[0, 0, 9, 10] = 1.0, 0.5, 0.2  # higher right and upper neighbour
    hm[0, 1, 10, 1], hm[0, 1, 10, 2] = 1.0, 0.5  # x == 1: mmpose applies no shift (1 < x required)
    coords, scores = codec.decode(hm)
    np.testing.assert_allclose(coords[0, 0], [10.25 * 4, 9.75 * 4])
    np.testing.assert_allclose(coords[0, 1], [1 * 4, 10 * 4])
    # an all-zero map: score 0 and coordinate -1 in heatmap pixels
    np.testing.assert_allclose(coords[0, 2], [-4, -4])
    np.testing.assert_allclose(scores[0], [1.0, 1.0, 0.0])


@pytest.mark.parametrize("name", ["udp", "msra"])
def test_weights_and_empty_maps(name):
    codec = build_codec(name, INPUT, HEATMAP)
    sx, sy = codec.stride
    kpts = np.array(
        [
            [100.0, 100.0, 2],  # visible
            [100.0, 100.0, 1],  # occluded but labelled: weight 1
            [100.0, 100.0, 0],  # unlabelled
            [-10 * sx, 100.0, 2],  # window (radius 6 px) fully left of the map
            [-5 * sx, 100.0, 2],  # outside, but the window still overlaps the map
            [100.0, (63 + 7) * sy, 2],  # window fully below the map
        ],
        np.float32,
    )
    hm, w = codec.encode(kpts)
    np.testing.assert_array_equal(w, [1, 1, 0, 0, 1, 0])
    assert np.all(hm[[2, 3, 5]] == 0)
    assert hm[4].max() > 0 and np.all(hm[4][:, 3:] == 0)  # window -4 +- 6 px
    np.testing.assert_array_equal(hm[0], hm[1])
    with pytest.raises(ValueError, match=r"\[K, 3\]"):
        codec.encode(kpts[:, :2])
    bad = kpts.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        codec.encode(bad)


@pytest.mark.parametrize("name,tol", [("udp", 0.01), ("msra", 0.75 * 4.0 + 1e-4)])
def test_flip_back_recovers_keypoints(name, tol):
    """Flip the keypoints as the input flip does, encode, flip the heatmaps back, decode: original points.

    MSRA: the rounding of the mirrored location plus the 1-px shift gives an error up to 0.75 stride.
    """
    rng = np.random.default_rng(3)
    codec = build_codec(name, INPUT, HEATMAP)
    in_w = INPUT[1]
    batch, flipped_maps = [], []
    for _ in range(20):
        kpts = _interior_keypoints(codec, len(FLIP), rng)
        flipped = kpts[FLIP].copy()
        flipped[:, 0] = in_w - 1 - flipped[:, 0]
        batch.append(kpts)
        flipped_maps.append(codec.encode(flipped)[0])
    back = codec.flip_back(torch.from_numpy(np.stack(flipped_maps)), FLIP)
    assert isinstance(back, torch.Tensor) and back.shape == (20, 6, 64, 48)
    coords, _ = codec.decode(back)
    err = np.abs(coords - np.stack(batch)[..., :2])
    assert err.max() <= tol, err.max()


def test_flip_back_shift_semantics():
    hm = torch.zeros(1, 2, 4, 5)
    hm[0, 0, 1, 1] = 1.0
    hm[0, 1, 2, 0] = 1.0
    udp = build_codec("udp", INPUT, HEATMAP).flip_back(hm, [1, 0])
    msra = build_codec("msra", INPUT, HEATMAP).flip_back(hm, [1, 0])
    assert udp[0, 1, 1, 3] == 1.0 and udp[0, 0, 2, 4] == 1.0  # swapped and mirrored: x -> 4 - x
    assert msra[0, 1, 1, 4] == 1.0 and msra[0, 1, 1, 3] == 0.0  # ... then shifted one px right
    assert msra[0, 0, 2, 4] == 0.0  # a peak in the last column falls off after the shift
    with pytest.raises(ValueError, match="flip_indices has 3 entries"):
        build_codec("udp", INPUT, HEATMAP).flip_back(hm, [1, 0, 2])


def test_decode_accepts_torch_and_checks_shape():
    rng = np.random.default_rng(4)
    codec = build_codec("udp", INPUT, HEATMAP)
    hm = np.stack([codec.encode(_interior_keypoints(codec, 4, rng))[0] for _ in range(3)])
    c_np, s_np = codec.decode(hm)
    c_t, s_t = codec.decode(torch.from_numpy(hm).double())
    assert c_np.shape == (3, 4, 2) and s_np.shape == (3, 4) and c_np.dtype == np.float32
    np.testing.assert_allclose(c_t, c_np, atol=1e-5)
    np.testing.assert_allclose(s_t, s_np, atol=1e-6)
    with pytest.raises(ValueError, match="heatmap_size"):
        codec.decode(hm[..., :32, :24])
    with pytest.raises(ValueError, match=r"\[B, K, h, w\]"):
        codec.decode(hm[0])


def _mmpose_weight(x, y, v, stride, size_wh, sigma):
    """mmpose 0.x _msra_generate_target / _udp_generate_target weight rule, re-derived from its definition."""
    tmp = sigma * 3
    mu_x, mu_y = int(x / stride[0] + 0.5), int(y / stride[1] + 0.5)
    ul = [int(mu_x - tmp), int(mu_y - tmp)]
    br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
    if ul[0] >= size_wh[0] or ul[1] >= size_wh[1] or br[0] < 0 or br[1] < 0:
        return 0.0
    return float(v > 0)


@pytest.mark.parametrize("name", ["udp", "msra"])
@pytest.mark.parametrize("sigma", [2.0, 3.0, 1.5])
def test_edge_weights_match_mmpose_rule(name, sigma):
    """Sweep positions across all four borders (sub-pixel steps) and compare with mmpose's per-joint loop."""
    codec = build_codec(name, INPUT, HEATMAP, sigma=sigma)
    (hh, hw), stride = HEATMAP, codec.stride
    xs = np.arange(-14.0, hw + 14.0, 0.37) * stride[0]
    ys = np.arange(-14.0, hh + 14.0, 0.41) * stride[1]
    pts = [(x, 100.0) for x in xs] + [(100.0, y) for y in ys]
    kpts = np.array([[x, y, 2.0] for x, y in pts], np.float32)
    _, w = codec.encode(kpts)
    expected = [_mmpose_weight(float(x), float(y), 2, stride, (hw, hh), sigma) for x, y in kpts[:, :2]]
    np.testing.assert_array_equal(w, expected)
    assert 0 < w.mean() < 1


@pytest.mark.parametrize("name", ["udp", "msra"])
def test_window_edge_rule_drops_the_empty_ring(name):
    """mmpose keeps weight 1 one pixel past the window (br == 0, all-zero target); 'window' gives it weight 0."""
    sx = build_codec(name, INPUT, HEATMAP).stride[0]
    # mu = int(x / stride + 0.5) truncates toward 0: x = -8 stride -> mu = -7 (br = 0); -7 stride -> mu = -6
    kpts = np.array([[-8 * sx, 100.0, 2], [-7 * sx, 100.0, 2]], np.float32)
    hm, w = build_codec(name, INPUT, HEATMAP).encode(kpts)
    np.testing.assert_array_equal(w, [1, 1])
    assert hm[0].max() == 0 and hm[1].max() > 0
    _, w_window = build_codec(name, INPUT, HEATMAP, edge_rule="window").encode(kpts)
    np.testing.assert_array_equal(w_window, [0, 1])
    with pytest.raises(ValueError, match="edge_rule"):
        build_codec(name, INPUT, HEATMAP, edge_rule="strict")
