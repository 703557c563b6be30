"""Clustered-prototype supervision (CPS) of the released PoseBH code, in its intended form (off by default).

When the prototypes freeze, the ``J * M`` prototypes are clustered by soft k-means with the cosine distance
``(1 - cos) / 2`` (assignments ``softmax(-beta * dist)``, ``beta`` 20, 500 iterations, centres started at rows
``i * M``), for every cluster count of ``options``; the count with the smallest ``err * (C / (J M))^2`` wins, ``err``
being the least-squares residual of rebuilding every prototype from the centres. Each cluster keeps the ``M``
prototypes closest to its centre (intended: prototypes ranked per cluster; the released code ranks clusters per
prototype) and the keypoint that owns the closest one. The cluster prototypes are then fixed; the loss applies the
PPC / PPD / heatmap terms to them, each cluster supervised by its owner keypoint's ground truth on the images of the
owner's dataset (clusters owned by another dataset's keypoint are left out on an image).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["soft_kmeans", "fit_clusters"]


@torch.no_grad()
def soft_kmeans(x: Tensor, init: Tensor, iterations: int = 500, beta: float = 20.0) -> Tensor:
    """Unit-norm centres ``[C, F]`` of the unit rows ``x [N, F]`` from the initial centres ``init [C, F]``."""
    centres = F.normalize(init.float(), dim=1)
    x = F.normalize(x.float(), dim=1)
    for _ in range(int(iterations)):
        a = torch.softmax(-beta * (1.0 - x @ centres.t()) / 2.0, dim=1)  # [N, C]
        centres = F.normalize(a.t() @ x, dim=1)
    return centres


@torch.no_grad()
def fit_clusters(
    prototypes: Tensor, options: Sequence[int] = (64, 96, 128), iterations: int = 500, beta: float = 20.0
) -> tuple[Tensor, Tensor]:
    """``(cluster prototypes [C, M, F], owner keypoint [C])`` of the prototypes ``[J, M, F]`` (see module doc)."""
    j, m, f = prototypes.shape
    x = F.normalize(prototypes.reshape(j * m, f).float(), dim=1)
    best: tuple[float, Tensor] | None = None
    for c in options:
        c = int(c)
        if c < 1 or c > j:  # init rows i * M need C <= J
            continue
        centres = soft_kmeans(x, x[torch.arange(c) * m], iterations, beta)
        coef = torch.linalg.lstsq(centres.t().double(), x.t().double()).solution
        err = float((centres.t().double() @ coef - x.t().double()).pow(2).sum())
        score = err * (c / (j * m)) ** 2
        if best is None or score < best[0]:
            best = (score, centres)
    if best is None:
        raise ValueError(f"bridge.posebh.cps.clusters {list(options)}: no count between 1 and J={j}")
    centres = best[1]
    dist = (1.0 - x @ centres.t()) / 2.0  # [J*M, C]
    idx = dist.argsort(dim=0)[:m]  # [M, C]: the M prototypes closest to each cluster
    return x[idx].permute(1, 0, 2).contiguous(), torch.div(idx[0], m, rounding_mode="floor")
