"""Exact t-SNE (van der Maaten & Hinton, JMLR 2008) in numpy, for the few hundred points of a figure (PoseBH's
J x M prototypes) without scikit-learn.

Every pair is computed (O(N^2) memory and time per iteration: fine up to a few thousand points). The recipe is the
usual one: per-point Gaussian bandwidths found by bisection so that each conditional distribution has the given
perplexity, symmetrised affinities, Student-t similarities in the embedding, early exaggeration (12 for the first
250 iterations), gradient descent with momentum (0.5, then 0.8) and per-coordinate gains, learning rate
``max(N / exaggeration / 4, 50)``. The start is a seeded Gaussian of standard deviation 1e-4, so the result is a
pure function of the input and ``seed`` (float64 throughout: bit-identical reruns on one machine).

``distances`` lets the caller choose the geometry: :func:`sign_invariant_distances` is the one for vectors
compared by ``|cos|`` (PoseBH's similarity), where ``p`` and ``-p`` are the same prototype.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sign_invariant_distances", "squared_distances", "tsne"]


def squared_distances(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x [N, D]`` (``[N, N]``, zero diagonal, >= 0)."""
    x = np.asarray(x, np.float64)
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def sign_invariant_distances(x: np.ndarray) -> np.ndarray:
    """``2 (1 - |cos|)`` between the rows of ``x``: the squared distance of the unit vectors up to sign,
    ``min(|a - b|^2, |a + b|^2)`` for unit rows (zero rows count as orthogonal to everything)."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norm > 0, norm, 1.0)
    d = 2.0 * (1.0 - np.abs(u @ u.T))
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def _affinities(d: np.ndarray, perplexity: float, tol: float = 1e-5, steps: int = 100) -> np.ndarray:
    """Row-conditional Gaussian affinities ``p_{j|i}`` of squared distances ``d`` whose entropy is
    ``log(perplexity)``; the precision of every row is bisected at once (vectorised)."""
    n = d.shape[0]
    target = np.log(perplexity)
    off = ~np.eye(n, dtype=bool)
    d = d[off].reshape(n, n - 1)
    d = d - d.min(1, keepdims=True)  # shift per row: the entropy does not change, exp() does not underflow
    beta = np.ones(n)
    lo, hi = np.zeros(n), np.full(n, np.inf)
    for _ in range(steps):
        p = np.exp(-d * beta[:, None])
        s = p.sum(1)
        entropy = np.log(s) + beta * (d * p).sum(1) / s
        err = entropy - target
        if np.all(np.abs(err) < tol):
            break
        high = err > 0  # too flat: sharpen
        lo = np.where(high, beta, lo)
        hi = np.where(high, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2.0, (lo + hi) / 2.0)
    p = np.exp(-d * beta[:, None])
    p /= p.sum(1, keepdims=True)
    out = np.zeros((n, n))
    out[off] = p.ravel()
    return out


def tsne(
    x: np.ndarray | None = None,
    *,
    distances: np.ndarray | None = None,
    dims: int = 2,
    perplexity: float = 30.0,
    iterations: int = 1000,
    exaggeration: float = 12.0,
    exaggeration_iterations: int = 250,
    learning_rate: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``[N, dims]`` t-SNE embedding of the rows of ``x`` (Euclidean) or of the squared distances ``distances``
    ``[N, N]`` (give one of the two).

    ``perplexity`` is capped at ``(N - 1) / 3`` so that small inputs still work (scikit-learn refuses them);
    ``learning_rate=None`` is ``max(N / exaggeration / 4, 50)``. Deterministic for a given ``seed``.
    """
    if (x is None) == (distances is None):
        raise ValueError("tsne: give the points x or their squared distances, not both / neither")
    if distances is None:
        d = squared_distances(x)
    else:
        d = np.asarray(distances, np.float64)
        if d.ndim != 2 or d.shape[0] != d.shape[1]:
            raise ValueError(f"tsne: distances must be a square [N, N] matrix, got shape {d.shape}")
    n = d.shape[0]
    if not np.isfinite(d).all():
        raise ValueError("tsne: the input has NaN or infinite values")
    if n < 3:
        raise ValueError(f"tsne needs at least 3 points, got {n}")
    if perplexity <= 0 or iterations < 1:
        raise ValueError(f"tsne: perplexity ({perplexity}) and iterations ({iterations}) must be positive")
    perplexity = min(float(perplexity), (n - 1) / 3.0)
    p = _affinities(d, perplexity)
    p = (p + p.T) / (2.0 * n)
    p = np.maximum(p, 1e-12)
    lr = float(learning_rate) if learning_rate is not None else max(n / exaggeration / 4.0, 50.0)
    y = np.random.default_rng(seed).normal(0.0, 1e-4, (n, dims))
    velocity = np.zeros_like(y)
    gains = np.ones_like(y)
    num, q, w = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))  # reused: no allocation per iteration
    wy = np.empty((n, dims))
    for it in range(iterations):
        early = it < exaggeration_iterations
        # num = 1 / (1 + |y_i - y_j|^2), zero diagonal; elementwise per dimension (no BLAS call: a threaded BLAS
        # spins on a busy machine for a product this thin)
        np.subtract.outer(y[:, 0], y[:, 0], out=num)
        num *= num
        for k in range(1, dims):
            np.subtract.outer(y[:, k], y[:, k], out=q)
            q *= q
            num += q
        num += 1.0
        np.reciprocal(num, out=num)
        np.fill_diagonal(num, 0.0)
        np.multiply(num, 1.0 / num.sum(), out=q)
        np.maximum(q, 1e-12, out=q)
        np.multiply(p, exaggeration if early else 1.0, out=w)
        w -= q
        w *= num  # (p_ij - q_ij) / (1 + |y_i - y_j|^2)
        for k in range(dims):  # wy = w @ y, again without BLAS
            np.multiply(w, y[:, k], out=q)
            wy[:, k] = q.sum(1)
        grad = 4.0 * (w.sum(1)[:, None] * y - wy)
        same = np.sign(grad) == np.sign(velocity)
        gains = np.maximum(np.where(same, gains * 0.8, gains + 0.2), 0.01)
        velocity = (0.5 if early else 0.8) * velocity - lr * gains * grad
        y = y + velocity
        y = y - y.mean(0)
    return y
