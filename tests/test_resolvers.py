"""The CPU default's precision follows the CPU: bf16-mixed only where bf16 is native."""

from __future__ import annotations

import pytest

import multipose.resolvers as resolvers
from conftest import compose


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_cpu_default_precision_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(resolvers, "cpu_has_native_bf16", lambda: native)
    assert compose("train", []).trainer.precision == expected
    assert compose("eval", []).trainer.precision == expected
    # an explicit choice wins
    assert compose("train", ["trainer.precision=32"]).trainer.precision == 32


def test_native_bf16_probe_agrees_with_torch():
    import torch

    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolvers.cpu_has_native_bf16() == bool(expected)


def test_head_bn_statistics_are_fp32_under_bf16_autocast():
    """Every head on every image under CPU bf16 autocast: the statistics recorded on a head's own samples are
    fp32, so the other samples normalise with them (bf16 statistics made batch_norm fail with 'mixed dtype')."""
    import torch
    from torch import nn

    from multipose.models.heads import bn_statistics_from, recording_bn_statistics

    head = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).train()
    x = torch.randn(6, 4, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with recording_bn_statistics(head) as stats:
            own = head(x[:3])
        with bn_statistics_from(head, stats):
            other = head(x[3:])
    assert stats["1"][0].dtype == torch.float32 and stats["1"][1].dtype == torch.float32
    assert own.shape == other.shape == (3, 4, 5, 5)
    assert torch.isfinite(other).all()
