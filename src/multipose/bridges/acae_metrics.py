"""Label-free cross-head consistency measures without an autoencoder (reference notes §4); the ACAE residual is
:func:`multipose.bridges.acae.consistency_residual` with a reference AE.

Pure numpy functions over pooled predictions; :class:`multipose.bridges.acae.ACAEBridge` collects the inputs
during validation and logs the results.

* :func:`bias_corrected_chd` - cross-head disagreement after subtracting each (head pair, joint) pair's mean
  offset: what remains is instance-level inconsistency, not a systematic difference of joint definitions.
* :func:`cross_head_predictability` - held-out error of a sum-to-one affine map from head A's joints to head B's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bias_corrected_chd", "cross_head_predictability", "sum_to_one_lstsq"]


def bias_corrected_chd(offsets: np.ndarray) -> float:
    """Mean ``|| o - mean_n(o) ||`` of ``offsets [N, P, 2]`` (instance ``n``, joint pair ``p``; the offset between
    two heads' predictions of one joint, in units of the box size). ``nan`` when empty."""
    o = np.asarray(offsets, np.float64)
    if o.size == 0 or o.shape[0] == 0:
        return float("nan")
    centred = o - o.mean(axis=0, keepdims=True)
    return float(np.linalg.norm(centred, axis=-1).mean())


def sum_to_one_lstsq(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """``W [K_a, K_b]`` minimising ``sum_n || y_n - W^T x_n ||^2 + ridge ||W||^2`` with every column of ``W``
    summing to one (an affine combination of A's joints per B joint), closed form (KKT system).

    ``x [N, K_a, D]``, ``y [N, K_b, D]``; the same weights apply to every coordinate axis.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ka = x.shape[1]
    xm = x.transpose(0, 2, 1).reshape(-1, ka)  # [N*D, K_a]
    ym = y.transpose(0, 2, 1).reshape(-1, y.shape[1])  # [N*D, K_b]
    gram = xm.T @ xm + ridge * xm.shape[0] * np.eye(ka) / max(ka, 1)
    kkt = np.zeros((ka + 1, ka + 1))
    kkt[:ka, :ka] = 2 * gram
    kkt[:ka, ka] = 1.0
    kkt[ka, :ka] = 1.0
    rhs = np.concatenate([2 * xm.T @ ym, np.ones((1, ym.shape[1]))], axis=0)
    sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    return sol[:ka]


def _normalise(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pose: subtract A's mean joint and divide by the std of A's y coordinates (PosePile's recipe)."""
    centre = a.mean(axis=1, keepdims=True)
    scale = a[..., 1].std(axis=1).clip(1e-6)[:, None, None]
    return (a - centre) / scale, (b - centre) / scale, scale[:, 0, 0]


def cross_head_predictability(a: np.ndarray, b: np.ndarray, sizes: np.ndarray, ridge: float = 1e-3) -> float:
    """Held-out mean error ``|| b - f(a) || / size`` of a sum-to-one affine map ``f`` from head A's predicted joints
    ``a [N, K_a, 2]`` to head B's ``b [N, K_b, 2]`` on the same instances: fitted on the even instances, scored
    on the odd ones (``nan`` with fewer than 4 instances). Lower means B is a more consistent function of A."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    sizes = np.asarray(sizes, np.float64).reshape(-1)
    if a.shape[0] < 4:
        return float("nan")
    an, bn, scale = _normalise(a, b)
    w = sum_to_one_lstsq(an[0::2], bn[0::2], ridge)
    pred = np.einsum("njc,jk->nkc", an[1::2], w)
    err = np.linalg.norm(pred - bn[1::2], axis=-1) * scale[1::2, None] / sizes[1::2, None]
    return float(err.mean())
