"""Dashboard figures of PoseBH (matplotlib, Agg): prototype similarity maps of a few crops, and a 2-D map of the
prototypes coloured by semantic tag (PCA; a t-SNE of :meth:`PoseBHBridge.prototype_table` gives the paper's
picture where scikit-learn is installed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

__all__ = ["similarity_figure", "prototype_figure", "project_2d"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def similarity_figure(
    images: Tensor, maps: Tensor, rows: Sequence[slice], names: Sequence[str], per_crop: int = 4
):
    """One row per crop: the crop, then the ``per_crop`` strongest prototype maps of its own skeleton."""
    plt = _plt()
    n = images.shape[0]
    fig, axes = plt.subplots(n, per_crop + 1, figsize=(2 * (per_crop + 1), 2.4 * n), squeeze=False)
    for i in range(n):
        img = images[i].detach().float().cpu().permute(1, 2, 0).numpy()
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
        axes[i, 0].imshow(img)
        axes[i, 0].set_title(names[i], fontsize=8)
        own = maps[i, rows[i]].detach().float().cpu().numpy()
        order = np.argsort(-own.reshape(own.shape[0], -1).max(1))[:per_crop]
        for j, k in enumerate(order):
            axes[i, j + 1].imshow(own[k], vmin=0.0, vmax=1.0, cmap="viridis")
            axes[i, j + 1].set_title(f"kpt {int(k)}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def project_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of the rows of ``x``."""
    c = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T


def prototype_figure(prototypes: np.ndarray, tags: Sequence[str], owners: Sequence[str]):
    """Scatter of the prototypes (PCA) coloured by semantic tag, marker by dataset."""
    plt = _plt()
    xy = project_2d(prototypes)
    uniq = sorted(set(tags))
    colour = {t: plt.cm.tab20(i % 20) for i, t in enumerate(uniq)}
    markers = "os^vD<>pPX*"
    fig, ax = plt.subplots(figsize=(7, 6))
    for i, ds in enumerate(dict.fromkeys(owners)):
        sel = [j for j, o in enumerate(owners) if o == ds]
        ax.scatter(
            xy[sel, 0],
            xy[sel, 1],
            c=[colour[tags[j]] for j in sel],
            marker=markers[i % len(markers)],
            s=14,
            label=ds,
        )
    ax.legend(fontsize=7, loc="best")
    ax.set_title("prototypes (PCA), colour = semantic tag")
    fig.tight_layout()
    return fig
