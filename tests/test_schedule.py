"""Learning-rate schedules: mmcv's linear warm-up, ViTPose step decay, cosine annealing."""

from __future__ import annotations

import math

import pytest

from multipose.models.optim import warmup_cosine_schedule, warmup_step_schedule


def test_step_schedule_warms_up_then_decays_at_milestones():
    f = warmup_step_schedule(warmup_iters=500, warmup_ratio=0.001, milestones=[170 * 10, 200 * 10], gamma=0.1)
    assert f(0) == pytest.approx(0.001)
    assert f(250) == pytest.approx(0.001 + 0.5 * 0.999)
    assert f(500) == 1.0 and f(1699) == 1.0
    assert f(1700) == pytest.approx(0.1) and f(1999) == pytest.approx(0.1)
    assert f(2000) == pytest.approx(0.01)


def test_cosine_schedule_anneals_to_the_floor():
    f = warmup_cosine_schedule(warmup_iters=100, warmup_ratio=0.001, total_steps=1100, min_ratio=0.05)
    assert f(0) == pytest.approx(0.001)
    assert f(100) == pytest.approx(1.0)
    assert f(600) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(1100) == pytest.approx(0.05) and f(5000) == pytest.approx(0.05)
    values = [f(s) for s in range(100, 1101, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone after warm-up
