"""FFN variants: efficient routing vs the official dense-masked formulation, merging, DDP-safe gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Mlp

from multipose.models import (
    IndependentMlp,
    PartiallySharedMlp,
    SharedIndependentMlp,
    TaskRouting,
    ViTPoseBackbone,
    merge_ffn,
)

C, HID, T = 32, 128, 4


def _randomise_(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def _ps(seed=0, **kw) -> PartiallySharedMlp:
    m = PartiallySharedMlp(C, HID, num_experts=T, part_features=8, **kw)
    _randomise_(m, seed)
    return m


def reference_ps(m: PartiallySharedMlp, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Official ViTPose++ MoEMlp: every expert on every sample, masked by dataset index."""
    h = F.gelu(m.fc1(x))
    shared = h @ m.fc2.weight.T + m.fc2.bias
    expert = torch.zeros(*x.shape[:-1], m.part_features)
    for k, e in enumerate(m.experts):
        expert = expert + (h @ e.weight.T + e.bias) * (idx.view(-1, 1, 1) == k)
    return torch.cat([shared, expert], dim=-1)


def reference_independent(m: IndependentMlp, x, idx):
    out = torch.zeros_like(x)
    for k, e in enumerate(m.experts):
        out = out + e(x) * (idx.view(-1, 1, 1) == k)
    return out


def reference_shared_independent(m: SharedIndependentMlp, x, idx):
    shared = m.fc2(F.gelu(m.fc1(x)))
    return shared + reference_independent(m, x, idx)


IDX = torch.tensor([3, 0, 3, 1, 0, 3])  # unsorted, task 2 absent


@pytest.mark.parametrize(
    "make,reference",
    [
        (lambda: _ps(0), reference_ps),
        (lambda: IndependentMlp(C, HID, num_experts=T), reference_independent),
        (lambda: SharedIndependentMlp(C, HID, num_experts=T), reference_shared_independent),
    ],
    ids=["ps", "independent", "shared_independent"],
)
def test_efficient_routing_matches_dense_masked_reference(make, reference):
    m = make()
    _randomise_(m, 1)
    x = torch.randn(len(IDX), 5, C, requires_grad=True)
    y = m(x, IDX)
    y_ref = reference(m, x, IDX)
    assert y.shape == (len(IDX), 5, C)
    assert (y - y_ref).abs().max().item() < 1e-6
    # gradients agree too (input and every parameter)
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), [x, *m.parameters()])
    grads_ref = torch.autograd.grad((y_ref * w).sum(), [x, *m.parameters()])
    for g, gr in zip(grads, grads_ref):
        assert (g - gr).abs().max().item() < 1e-5


def test_routing_plan_sorting():
    r = TaskRouting.from_dataset_idx(IDX, T)
    assert r.counts == (2, 1, 0, 3)
    assert r.sort(IDX).tolist() == [0, 0, 1, 3, 3, 3]
    assert torch.equal(r.unsort(r.sort(IDX)), IDX)
    already = TaskRouting.from_dataset_idx(torch.tensor([0, 0, 2, 3]), T)
    assert already.order is None and already.counts == (2, 0, 1, 1)
    with pytest.raises(ValueError, match="outside"):
        TaskRouting.from_dataset_idx(torch.tensor([0, -1]), T)
    with pytest.raises(ValueError, match="1-D integer"):
        TaskRouting.from_dataset_idx(torch.tensor([0.0, 1.0]), T)


def test_ps_output_layout_shared_first():
    m = _ps(3)
    x = torch.randn(2, 3, C)
    y = m(x, torch.tensor([1, 1]))
    h = F.gelu(m.fc1(x))
    assert torch.allclose(y[..., :24], m.fc2(h), atol=1e-6)
    assert torch.allclose(y[..., 24:], m.experts[1](h), atol=1e-6)


@pytest.mark.parametrize("cls", [PartiallySharedMlp, IndependentMlp, SharedIndependentMlp])
def test_batch_lacking_a_task_gives_zero_grads_to_its_expert(cls):
    kw = {"part_features": 8} if cls is PartiallySharedMlp else {}
    m = cls(C, HID, num_experts=T, **kw)
    _randomise_(m, 4)
    x = torch.randn(3, 4, C)
    m(x, torch.tensor([0, 1, 0])).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        if name.startswith(("experts.2.", "experts.3.")):
            assert torch.count_nonzero(p.grad) == 0, name
        elif name.startswith(("experts.0.", "experts.1.")):
            assert torch.count_nonzero(p.grad) > 0, name


def test_ddp_unsafe_mode_leaves_absent_experts_without_grad():
    m = _ps(5, ddp_safe=False)
    m(torch.randn(2, 4, C), torch.tensor([1, 1])).sum().backward()
    assert m.experts[0].weight.grad is None and m.experts[1].weight.grad is not None


def _backbone(ffn: str, seed: int = 0) -> ViTPoseBackbone:
    torch.manual_seed(seed)
    m = ViTPoseBackbone(img_size=(64, 48), embed_dim=48, depth=2, num_heads=3, ffn=ffn, num_experts=3)
    _randomise_(m, seed)  # also makes the IS-FFN task branches non-zero
    return m.eval()


@pytest.mark.parametrize("ffn", ["ps", "independent", "shared_independent"])
def test_merged_dense_backbone_equals_moe_path_for_every_task(ffn):
    m = _backbone(ffn)
    x = torch.randn(5, 3, 64, 48)
    idx = torch.tensor([2, 0, 1, 2, 0])
    with torch.no_grad():
        y = m(x, idx)
        for t in range(3):
            dense = m.merge_experts(t)
            assert dense.ffn == "shared" and dense.num_experts == 1
            assert all(type(b.mlp) is Mlp for b in dense.blocks)
            y_t = dense(x)
            # the merged model equals the MoE path for every image routed to t (not only t's own samples)
            y_moe_t = m(x, torch.full((5,), t))
            assert (y_t - y_moe_t).abs().max().item() < 1e-5
            sel = idx == t
            assert (y_t[sel] - y[sel]).abs().max().item() < 1e-5
    # different tasks really give different features (the test would be vacuous otherwise)
    assert (m.merge_experts(0)(x) - m.merge_experts(1)(x)).abs().max().item() > 1e-3


def test_merged_ps_fc2_is_official_model_split_layout():
    m = _ps(6)
    dense = merge_ffn(m, 2)
    assert dense.fc2.weight.shape == (C, HID)
    assert torch.equal(dense.fc2.weight[:24], m.fc2.weight)
    assert torch.equal(dense.fc2.weight[24:], m.experts[2].weight)
    assert torch.equal(dense.fc2.bias[24:], m.experts[2].bias)
    with pytest.raises(ValueError, match="out of range"):
        merge_ffn(m, 4)


def test_merged_is_ffn_doubles_hidden_width():
    m = SharedIndependentMlp(C, HID, num_experts=T)
    _randomise_(m, 7)
    dense = merge_ffn(m, 1)
    assert dense.fc1.out_features == 2 * HID
    x = torch.randn(2, 3, C)
    assert (dense(x) - m(x, torch.tensor([1, 1]))).abs().max().item() < 1e-5


def test_init_from_dense_reproduces_dense_ffn():
    dense = Mlp(C, HID)
    _randomise_(dense, 8)
    state = dense.state_dict()
    x = torch.randn(4, 3, C)
    idx = torch.tensor([0, 3, 1, 2])
    ps = PartiallySharedMlp(C, HID, num_experts=T, part_features=8)
    ps.init_from_dense(state)
    ind = IndependentMlp(C, HID, num_experts=T)
    ind.init_from_dense(state)
    isf = SharedIndependentMlp(C, HID, num_experts=T)
    _randomise_(isf, 9)
    isf.init_from_dense(state)
    with torch.no_grad():
        for m in (ps, ind, isf):
            assert (m(x, idx) - dense(x)).abs().max().item() < 1e-6, type(m).__name__


def test_is_ffn_zero_init_branch_still_trains():
    m = SharedIndependentMlp(C, HID, num_experts=2)
    m.zero_init_experts()
    x = torch.randn(2, 3, C)
    y = m(x, torch.tensor([0, 1]))
    assert torch.allclose(y, m.fc2(F.gelu(m.fc1(x))))
    y.square().sum().backward()
    assert torch.count_nonzero(m.experts[0].fc2.weight.grad) > 0


def test_backbone_sorting_does_not_reorder_output():
    m = _backbone("ps", seed=3)
    x = torch.randn(4, 3, 64, 48)
    idx = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        y = m(x, idx)
        for b in range(4):
            assert (m(x[b : b + 1], idx[b : b + 1]) - y[b : b + 1]).abs().max().item() < 1e-5


def test_missing_dataset_idx_is_a_clear_error():
    with pytest.raises(ValueError, match="dataset_idx"):
        _ps(0)(torch.randn(1, 2, C), None)
