"""Keypoint prototypes of PoseBH: |cos| similarity, Sinkhorn-Knopp assignment, EMA update, DDP averaging.

Pure tensor functions (no Lightning). Shapes: prototypes ``P [J, M, F]`` (J keypoints of the unified layout of the
mix, M prototypes per keypoint, F embedding channels), embeddings ``E [B, F, h, w]``. Every function works in
fp32 with autocast off: the similarities are compared with thresholds and exponentiated (``exp(s / kappa)``), which
fp16 would round away.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "init_prototypes",
    "similarity_maps",
    "keypoint_maps",
    "pixel_similarity",
    "sinkhorn",
    "assign",
    "aggregate",
    "ema_update",
    "average_across_ranks",
]

#: clamp of the keypoint score ``max_m |cos|`` (released code)
SCORE_CLAMP = (1e-4, 1.0 - 1e-4)


def _fp32(t: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for ``t``'s device type (the maths below must not run in fp16/bf16)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def init_prototypes(
    num_keypoints: int, per_keypoint: int, dim: int, generator: torch.Generator | None = None
) -> Tensor:
    """``[J, M, F]`` truncated-normal(0, 0.02, [-2, 2]) rows, L2-normalised along F (released ``KptPrototype``)."""
    p = torch.empty(num_keypoints, per_keypoint, dim)
    torch.nn.init.trunc_normal_(p, mean=0.0, std=0.02, a=-2.0, b=2.0, generator=generator)
    return F.normalize(p, dim=-1)


def similarity_maps(embeddings: Tensor, prototypes: Tensor) -> Tensor:
    """``|cos|`` between every pixel embedding and every prototype: ``[B, J, M, h, w]`` in fp32.

    The absolute value makes anti-aligned vectors count as similar (released ``sim_rescale='abs'``)."""
    with _fp32(embeddings):
        e = F.normalize(embeddings.float(), dim=1)
        p = F.normalize(prototypes.float(), dim=-1)
        return torch.einsum("bfhw,jmf->bjmhw", e, p).abs()


def keypoint_maps(similarity: Tensor) -> Tensor:
    """Prototype heatmaps ``[B, J, h, w]``: ``clamp(max_m |cos|, 1e-4, 1 - 1e-4)``."""
    return similarity.amax(dim=2).clamp(*SCORE_CLAMP)


def pixel_similarity(pixels: Tensor, prototypes: Tensor) -> Tensor:
    """``|cos|`` of normalised pixel embeddings ``[n, F]`` with prototype rows ``[R, F]`` (or ``[n, R, F]``, one
    set per pixel): ``[n, R]`` in fp32."""
    with _fp32(pixels):
        p = F.normalize(prototypes.float(), dim=-1)
        if p.dim() == 3:
            return torch.einsum("nf,nrf->nr", pixels.float(), p).abs()
        return (pixels.float() @ p.t()).abs()


@torch.no_grad()
def sinkhorn(
    scores: Tensor, labels: Tensor, num_classes: int, kappa: float = 0.05, iterations: int = 3
) -> Tensor:
    """Sinkhorn-Knopp assignment of pixels to the M prototypes of their own class (ProtoSeg's
    ``distributed_sinkhorn``, one independent problem per class, solved together).

    Args:
        scores: ``[n, M]`` similarity of each pixel to the M prototypes of its class.
        labels: ``[n]`` class of each pixel (``0 <= label < num_classes``).
        kappa: entropic temperature (epsilon). iterations: alternating normalisations.

    Returns ``[n, M]``: each row sums to 1 (one unit per pixel); with many iterations every prototype of a class
    receives ``n_k / M`` of that class's mass (equal partition).
    """
    with _fp32(scores):
        a = torch.exp(scores.float() / kappa)
        labels = labels.long()
        ones = torch.ones_like(labels, dtype=a.dtype)
        n_k = torch.zeros(num_classes, dtype=a.dtype, device=a.device).index_add_(0, labels, ones)
        total = torch.zeros(num_classes, dtype=a.dtype, device=a.device).index_add_(0, labels, a.sum(1))
        a = a / total[labels, None]
        m = a.shape[1]
        for _ in range(int(iterations)):
            per_proto = torch.zeros(num_classes, m, dtype=a.dtype, device=a.device).index_add_(0, labels, a)
            a = a / per_proto[labels] / m  # every prototype of a class gets 1/M of its mass
            a = a / a.sum(1, keepdim=True) / n_k[labels, None]  # every pixel gets 1/n_k
        return a * n_k[labels, None]


@torch.no_grad()
def assign(
    plan: Tensor, gumbel: bool = True, tau: float = 0.5, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``(t [n], q [n, M])``: the hard CE target ``t = argmax`` of the Sinkhorn plan and the one-hot EMA assignment
    ``q``. With ``gumbel`` (released code, from ProtoSeg) ``q = gumbel_softmax(plan, tau, hard)``: the Gumbel noise
    is added to the probabilities themselves, so ``q`` is strongly randomised and may differ from ``t``; without
    it ``q = one_hot(t)``."""
    t = plan.argmax(dim=1)
    if not gumbel:
        return t, F.one_hot(t, plan.shape[1]).to(plan.dtype)
    u = torch.rand(plan.shape, generator=generator, device=plan.device, dtype=plan.dtype)
    g = -torch.log(-torch.log(u.clamp_min(1e-20)).clamp_min(1e-20))
    pick = ((plan + g) / tau).argmax(dim=1)
    return t, F.one_hot(pick, plan.shape[1]).to(plan.dtype)


@torch.no_grad()
def aggregate(
    pixels: Tensor, rows: Tensor, q: Tensor, weight: Tensor, num_rows: int
) -> tuple[Tensor, Tensor]:
    """EMA statistics of one step: ``(v [J, M, F], n [J, M])`` with ``v_{j,m} = sum_i q_im w_i^2 e_i`` and
    ``n_{j,m} = sum_i q_im w_i`` over the pixels ``i`` of prototype row ``j = rows_i`` (released
    ``prototype_learning``: the assignment and the feature are both multiplied by ``w``, hence ``w^2``)."""
    m, f = q.shape[1], pixels.shape[1]
    w = weight.float()
    contrib = (q * (w * w)[:, None])[:, :, None] * pixels.float()[:, None, :]  # [n, M, F]
    v = torch.zeros(num_rows, m, f, dtype=torch.float32, device=pixels.device).index_add_(0, rows, contrib)
    n = torch.zeros(num_rows, m, dtype=torch.float32, device=pixels.device).index_add_(
        0, rows, q * w[:, None]
    )
    return v, n


@torch.no_grad()
def ema_update(prototypes: Tensor, v: Tensor, n: Tensor, momentum: float = 0.999) -> Tensor:
    """``P <- momentum * P + (1 - momentum) * v / |v|`` for the prototypes with ``n != 0`` (others unchanged),
    then every row re-normalised. Returns the new ``[J, M, F]`` tensor."""
    mean = F.normalize(v, dim=-1)
    upd = momentum * prototypes + (1.0 - momentum) * mean
    out = torch.where((n != 0)[..., None], upd, prototypes)
    return F.normalize(out, dim=-1)


@torch.no_grad()
def average_across_ranks(t: Tensor) -> Tensor:
    """Mean of ``t`` over the DDP ranks (identity without an initialised process group). Every rank ends with the
    same tensor; a plain broadcast would instead let rank 0's update win."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
