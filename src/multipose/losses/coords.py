"""Differentiable keypoint coordinates from heatmaps: a windowed soft-argmax.

For every heatmap the integer arg-max picks a ``(2 r + 1)^2`` window around it (the pick itself carries no
gradient); inside the window the coordinate is the expectation of the pixel grid under
``softmax(beta * H / peak)``, where ``peak`` is the heatmap's maximum, so the temperature adapts to the heatmap's
amplitude (the result is invariant to scaling the heatmap; the gradient flows through ``peak`` too). With the codecs' Gaussian targets (sigma 2 heatmap
pixels) the defaults ``radius=3, beta=5`` keep the expectation within 0.04 heatmap pixels of the Gaussian's true
sub-pixel centre for offsets up to half a pixel, where a plain window mean (or ``beta`` -> 0) is biased towards
the arg-max pixel by up to 0.3 px and a full-map softmax is pulled by the background.

Coordinates are returned in **input-crop pixels** with the codec's stride (:mod:`multipose.data.codecs`):
``x_in = x_hm * stride_x`` where the stride is ``(in - 1) / (hm - 1)`` for UDP and ``in / hm`` for MSRA, which is
exactly how each codec's ``decode`` maps heatmap pixels, so UDP and MSRA heads give comparable points.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["soft_argmax", "heatmap_coords"]


def soft_argmax(heatmaps: Tensor, radius: int = 3, beta: float = 5.0) -> tuple[Tensor, Tensor]:
    """Windowed soft-argmax of ``heatmaps [..., h, w]``.

    Returns ``(xy [..., 2] in heatmap pixels (x, y), peak [...])``; ``peak`` is each heatmap's maximum
    (detached: a confidence weight, not a training signal). Differentiable in the heatmap values (float64 gradcheck in
    ``tests/test_acae_bridge.py``) except where the arg-max itself moves.
    """
    if heatmaps.ndim < 2:
        raise ValueError(f"soft_argmax expects heatmaps [..., h, w], got shape {tuple(heatmaps.shape)}")
    if int(radius) < 0:
        raise ValueError(f"soft_argmax: radius must be >= 0, got {radius}")
    if not beta > 0:
        raise ValueError(f"soft_argmax: beta must be > 0, got {beta}")
    *lead, h, w = heatmaps.shape
    flat = heatmaps.reshape(*lead, h * w)
    peak, idx = flat.detach().max(dim=-1)
    ys = torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype)
    xs = torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.reshape(-1), gy.reshape(-1)
    ax = (idx % w).to(heatmaps.dtype)[..., None]
    ay = (idx // w).to(heatmaps.dtype)[..., None]
    inside = ((gx - ax).abs() <= radius) & ((gy - ay).abs() <= radius)
    live_peak = flat.gather(-1, idx[..., None])  # the maximum, differentiable (it sets the temperature)
    scale = beta / live_peak.abs().clamp_min(1e-6)
    logits = (flat * scale).masked_fill(~inside, float("-inf"))
    prob = torch.softmax(logits, dim=-1)
    xy = torch.stack([(prob * gx).sum(-1), (prob * gy).sum(-1)], dim=-1)
    return xy, peak


def heatmap_coords(
    heatmaps: Tensor, stride: Sequence[float] | Tensor, radius: int = 3, beta: float = 5.0
) -> tuple[Tensor, Tensor]:
    """:func:`soft_argmax` mapped to input-crop pixels: ``(xy [..., 2] input px, peak [...])``.

    ``stride`` is the codec's ``(x, y)`` input pixels per heatmap pixel (``build_codec(...).stride``).
    """
    xy, peak = soft_argmax(heatmaps, radius, beta)
    s = torch.as_tensor(stride, dtype=xy.dtype, device=xy.device).reshape(2)
    return xy * s, peak
