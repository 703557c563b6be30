"""PoseBH's prototype losses on one dataset's pixels: the pixel sampling rule, PPC / PPD (contrastive prototype
losses, with Sinkhorn targets) and the statistics of the EMA update. Pure tensor functions.

Indexing. Dataset ``d`` owns the prototype rows ``offset_d .. offset_d + K_d - 1`` of the unified layout. The
intended equations (default) take the PPC logits of a pixel from those rows (flattened columns
``offset_d * M + e``), run Sinkhorn on the pixel's own keypoint row ``offset_d + k`` and count an EMA sample as
correct when the global nearest keypoint is ``offset_d + k``. ``faithful=True`` reproduces the released code
(``KptPrototype.prototype_learning``), which is the same for the first dataset and wrong for the others: logit
columns ``offset_d + e``, Sinkhorn on row ``k``, correctness ``argmax == k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from multipose.bridges.posebh.prototypes import aggregate, assign, pixel_similarity, sinkhorn

__all__ = ["PixelSamples", "ContrastiveResult", "sample_pixels", "prototype_logits", "contrastive"]


@dataclass
class PixelSamples:
    """Sampled pixels: ``image`` (index into the given heatmaps), ``y``, ``x``, ``label`` (local keypoint index)
    and ``conf`` (the target value there), each ``[n]``."""

    image: Tensor
    y: Tensor
    x: Tensor
    label: Tensor
    conf: Tensor

    def __len__(self) -> int:
        return int(self.image.numel())

    def gather(self, maps: Tensor) -> Tensor:
        """``[n, C]``: the channels of ``maps [N, C, h, w]`` at the sampled pixels."""
        return maps[self.image, :, self.y, self.x]


def sample_pixels(targets: Tensor, threshold: float = 0.0) -> PixelSamples:
    """Every pixel whose target maximum over keypoints exceeds ``threshold`` (0: every pixel inside a non-zero
    Gaussian window), labelled with the argmax keypoint (released ``hm_sample``). ``targets [N, K, h, w]``."""
    u, c = targets.detach().float().max(dim=1)
    b, y, x = (u > threshold).nonzero(as_tuple=True)
    return PixelSamples(b, y, x, c[b, y, x], u[b, y, x])


def prototype_logits(
    pixels: Tensor, prototypes: Tensor, offset: int, k: int, faithful: bool = False
) -> Tensor:
    """PPC logits ``[n, k * M]``: ``|cos|`` of the (normalised) pixel embeddings with the dataset's prototypes,
    column ``c * M + m`` for keypoint ``c``, prototype ``m`` (intended), or the released code's columns
    ``offset + e`` of the flattened ``[J * M]`` prototypes (``faithful``). No temperature, as released."""
    m = prototypes.shape[1]
    flat = prototypes.reshape(-1, prototypes.shape[-1])
    start = offset if faithful else offset * m
    if start + k * m > flat.shape[0]:
        raise ValueError(f"prototype rows {start}..{start + k * m} exceed the {flat.shape[0]} prototypes")
    return pixel_similarity(pixels, flat[start : start + k * m])


@dataclass
class ContrastiveResult:
    ppc: Tensor  # scalar, mean CE over the pixels
    ppd: Tensor  # scalar, mean (1 - z_target)^2
    v: Tensor | None  # EMA statistics [J, M, F] (None when not asked)
    n: Tensor | None  # [J, M]
    usage: tuple[int, int]  # (prototypes that are some pixel's raw nearest, prototypes of the classes seen)
    entropy: Tensor  # mean normalised entropy of the Sinkhorn rows (1 = uniform, 0 = hard)


def contrastive(
    pixels: Tensor,
    labels: Tensor,
    conf: Tensor,
    prototypes: Tensor,
    offset: int,
    k: int,
    *,
    kappa: float = 0.05,
    iterations: int = 3,
    faithful: bool = False,
    nearest: Tensor | None = None,
    ema: bool = False,
    gumbel: bool = True,
) -> ContrastiveResult:
    """PPC and PPD of one dataset's sampled pixels and, with ``ema``, the EMA statistics of the prototypes.

    Args:
        pixels: ``[n, F]`` L2-normalised pixel embeddings (with gradient).
        labels: ``[n]`` local keypoint index; conf: ``[n]`` target value (the EMA weight).
        prototypes: ``[J, M, F]`` (a buffer: never receives gradient).
        offset, k: the dataset's first prototype row and keypoint count.
        nearest: ``[n]`` index (0..J-1) of each pixel's nearest keypoint over all prototypes (for the EMA
            correctness mask; needed with ``ema``).
    """
    j_total, m, _ = prototypes.shape
    protos = prototypes.detach()
    labels = labels.long()
    rows = labels if faithful else labels + offset  # Sinkhorn input: released code reads global row k
    q0 = pixel_similarity(pixels.detach(), protos[rows])  # [n, M]
    plan = sinkhorn(q0, labels, k, kappa=kappa, iterations=iterations)
    t, q = assign(plan, gumbel=gumbel)
    logits = prototype_logits(pixels, protos, offset, k, faithful)  # [n, k*M]
    target = labels * m + t
    ppc = F.cross_entropy(logits, target)
    ppd = (1.0 - logits.gather(1, target[:, None]).squeeze(1)).pow(2).mean()
    with torch.no_grad():
        p = plan.clamp_min(1e-12)
        entropy = (-(p * p.log()).sum(1) / max(torch.log(torch.tensor(float(m))).item(), 1e-12)).mean()
        seen = torch.unique(labels)
        used = torch.unique(labels * m + q0.argmax(1))
        usage = (int(used.numel()), int(seen.numel()) * m)
    v = n = None
    if ema:
        if nearest is None:
            raise ValueError("contrastive(ema=True) needs the nearest keypoint of every pixel")
        correct = nearest == (labels if faithful else labels + offset)
        v, n = aggregate(pixels.detach(), labels + offset, q, conf * correct, j_total)
    return ContrastiveResult(ppc, ppd, v, n, usage, entropy)
