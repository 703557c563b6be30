"""Fitting the affine-combining autoencoder: pseudo-ground truth, the fit, held-out error, new skeletons, oracle.

* :func:`run_heads` runs heads (flip test, :class:`multipose.inference.Predictor`) on chosen instances of one
  dataset with the validation crop (no augmentation) and returns their predictions, the instances' own labels
  and, on the synthetic world, their hidden all-skeleton ground truth (``extra_gt``) - all in **crop-height
  units** relative to the crop centre, ``u = (x - c_x) / h_crop``, ``v = (y - c_y) / h_crop`` (``h_crop`` the
  padded, aspect-fixed box height: the model input frame, reference §3.2.4).
* :func:`collect_pseudo_gt` does that for a pool of training instances of every dataset of the AE's union and
  maps the heads' joints into the union (:func:`~multipose.bridges.acae_model.gather_union`: a union joint seen
  by several heads is their confidence-weighted mean; each joint's weight is its heatmap peak).
* :func:`fit_acae`: weighted L1 reconstruction + ``lam * l1_penalty``, Adam with the piecewise-constant
  ``3e-2 -> 3e-3 -> 3e-4`` schedule (boundaries at 40 % / 80 % of the step budget), minibatches drawn from a
  seeded generator, a held-out split and per-joint held-out error. Deterministic given the seed.
* :func:`fit_affine_map` / :func:`new_skeleton_keypoints`: a new skeleton without retraining - a sum-to-one,
  l1-regularised affine map latents -> new joints (PosePile's ``solve_affine_lasso`` objective, solved here by
  ADMM instead of cvxpy), fitted on per-pose normalised poses.
* :func:`oracle_report`: how close AEs get to the hidden ground truth (the oracle is :func:`fit_acae` on the
  hidden GT of the same instances).

Hidden ground truth is read only here, for the oracle and for reports; nothing in training reads it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multipose.bridges.acae_model import AffineCombiningAE, gather_union

log = logging.getLogger(__name__)

__all__ = [
    "FitResult",
    "HeadRun",
    "PseudoGT",
    "collect_pseudo_gt",
    "fit_acae",
    "fit_affine_map",
    "heldout_error",
    "hidden_union",
    "new_skeleton_keypoints",
    "oracle_report",
    "run_heads",
    "select_pool",
    "to_crop_units",
    "val_dataset",
]


# --------------------------------------------------------------------------------------------------
# Running the heads
# --------------------------------------------------------------------------------------------------


def to_crop_units(points: Tensor, center: Tensor, scale: Tensor) -> Tensor:
    """Image pixels ``[..., K, >=2]`` -> crop-height units ``[..., K, 2]`` (``scale`` = padded box ``[w, h]``)."""
    c = center.to(torch.float64).unsqueeze(-2)
    h = scale[..., 1].to(torch.float64)[..., None, None]
    return (points[..., :2].to(torch.float64) - c) / h


@dataclass
class HeadRun:
    """Heads on chosen instances of one dataset, in crop-height units (see the module docstring).

    ``preds[head]`` ``[N, K_head, 3]`` = ``(u, v, heatmap peak)``; ``gt`` ``[N, K, 3]`` = ``(u, v, labelled)`` of
    the dataset's own labels; ``hidden[skeleton]`` ``[N, K_s, 3]`` = ``(u, v, labelled)`` of the hidden ground
    truth where every instance has it (synthetic world), else empty; ``center``/``scale`` ``[N, 2]`` undo the
    normalisation (``pixels = u * scale_h + center``); ``indices`` the instances' positions in the list run.
    """

    dataset: str
    indices: np.ndarray
    preds: dict[str, Tensor]
    gt: Tensor
    hidden: dict[str, Tensor]
    center: Tensor
    scale: Tensor
    head_size: np.ndarray | None = None


def val_dataset(datamodule: Any, name: str, instances: Sequence[Any]) -> Any:
    """A :class:`~multipose.data.dataset.TopDownDataset` of ``instances`` with ``name``'s validation crop (no
    augmentation), codec and dataset index."""
    from multipose.data.dataset import TopDownDataset
    from multipose.data.transforms import TopDownTransform

    entry = datamodule.dataset_entry(name)
    skel = datamodule.skeletons[name]
    transform = TopDownTransform(
        datamodule.input_size, skel, train=False, use_udp=entry.use_udp, photometric=False
    )
    return TopDownDataset(
        instances,
        skel,
        transform,
        datamodule.codecs[name],
        dataset_idx=datamodule.dataset_names.index(name),
        kmax=skel.num_keypoints,
        name=f"{name} (ACAE pool)",
    )


@torch.no_grad()
def run_heads(
    predictor: Any,
    dataset: Any,
    heads: Sequence[str],
    indices: Sequence[int] | None = None,
    batch_size: int = 64,
    use_udp: bool = True,
    name: str = "",
) -> HeadRun:
    """Every head in ``heads`` on ``dataset[indices]`` (a ``TopDownDataset`` with a validation transform)."""
    idx = np.arange(len(dataset)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    device = next(predictor.model.parameters()).device
    preds: dict[str, list[Tensor]] = {h: [] for h in heads}
    gts, centers, scales = [], [], []
    for start in range(0, len(idx), batch_size):
        samples = [dataset[int(i)] for i in idx[start : start + batch_size]]
        k = int(samples[0]["num_keypoints"])
        images = torch.stack([s["image"] for s in samples]).to(device)
        center = torch.stack([s["center"] for s in samples])
        scale = torch.stack([s["scale"] for s in samples])
        out = predictor.predict(images, center, scale, list(heads), use_udp)
        for h, p in out.items():
            kp = torch.as_tensor(p.keypoints)
            preds[h].append(torch.cat([to_crop_units(kp, center, scale), kp[..., 2:].double()], -1))
        gt = torch.stack([s["keypoints"][:k] for s in samples])
        gts.append(torch.cat([to_crop_units(gt, center, scale), (gt[..., 2:] > 0).double()], -1))
        centers.append(center)
        scales.append(scale)
    center, scale = torch.cat(centers), torch.cat(scales)
    insts = [dataset.instances[int(i)] for i in idx]
    hidden: dict[str, Tensor] = {}
    names = set.intersection(*(set(i.extra_gt) for i in insts)) if insts else set()
    for skel in sorted(names):
        raw = torch.as_tensor(np.stack([np.asarray(i.extra_gt[skel]) for i in insts]))
        hidden[skel] = torch.cat([to_crop_units(raw, center, scale), (raw[..., 2:] > 0).double()], -1)
    heads_size = [getattr(i, "head_size", None) for i in insts]
    return HeadRun(
        dataset=name or getattr(dataset, "name", ""),
        indices=idx,
        preds={h: torch.cat(v) for h, v in preds.items()},
        gt=torch.cat(gts),
        hidden=hidden,
        center=center,
        scale=scale,
        head_size=np.array(heads_size, dtype=np.float64) if all(s is not None for s in heads_size) else None,
    )


# --------------------------------------------------------------------------------------------------
# Pseudo-ground truth
# --------------------------------------------------------------------------------------------------


@dataclass
class PseudoGT:
    """Union poses ``[N, J, 2]`` (crop-height units) with per-joint weights ``[N, J]``, the source dataset of each
    (``sources[n]`` indexes ``datasets``), and, on the synthetic world, the hidden ground truth in the union
    (``hidden`` / ``hidden_weights``, None elsewhere)."""

    poses: Tensor
    weights: Tensor
    sources: Tensor
    datasets: list[str]
    hidden: Tensor | None = None
    hidden_weights: Tensor | None = None
    runs: dict[str, HeadRun] = field(default_factory=dict, repr=False)


def select_pool(
    instances: Mapping[str, Sequence[Any]], pool: int, seed: int = 0, min_labelled: float = 0.5
) -> dict[str, np.ndarray]:
    """Indices of up to ``pool`` instances in all, split evenly over the datasets, drawn with ``seed``.

    Keeps instances with at least ``min_labelled`` of their keypoints labelled (mostly complete people, the
    reference's "full-body, non-truncated" pool); a dataset with fewer takes all it has.
    """
    if pool < 1:
        raise ValueError(f"pool={pool}: the pseudo-GT pool needs at least one instance")
    rng = np.random.default_rng(seed)
    per = int(np.ceil(pool / max(1, len(instances))))
    out = {}
    for name, insts in instances.items():
        ok = [
            i for i, inst in enumerate(insts) if (np.asarray(inst.keypoints)[:, 2] > 0).mean() >= min_labelled
        ]
        ok = np.asarray(ok, dtype=np.int64)
        out[name] = np.sort(rng.permutation(ok)[:per]) if len(ok) else ok
    return out


def _train_instances(datamodule: Any, name: str) -> list[Any]:
    if not getattr(datamodule, "train_datasets", None):
        datamodule.setup("fit")
    ds = datamodule.train_datasets[datamodule.dataset_names.index(name)]
    return list(ds.instances) if ds is not None else []


def mix_of_heads(datamodule: Any, model: Any) -> dict[str, Any]:
    """The data mix's description (``datamodule.describe()``) restricted to the datasets ``model`` has a head for:
    a set held out of training (``fit exclude=...``, ``add-skeleton``) is in the mix but has no head."""
    mix = datamodule.describe()
    mix["datasets"] = {n: e for n, e in mix["datasets"].items() if n in model.heads}
    return mix


def collect_pseudo_gt(
    model_or_predictor: Any,
    datamodule: Any,
    ae: AffineCombiningAE,
    pool: int = 2000,
    seed: int = 0,
    batch_size: int = 64,
    flip_test: bool = True,
    min_labelled: float = 0.5,
) -> PseudoGT:
    """Every head of ``ae``'s union (``ae.index_map``) on a pool of training instances of those datasets.

    ``model_or_predictor``: a :class:`~multipose.models.pose_model.PoseModel` (run in eval mode, its mode restored
    afterwards) or a :class:`~multipose.inference.Predictor`. Datasets without training instances (e.g.
    ``batch_count: 0``) contribute no pool but their heads still predict.
    """
    from multipose.inference import Predictor

    if not ae.index_map:
        raise ValueError("the AE has no index map; build it with AffineCombiningAE.for_mix")
    if isinstance(model_or_predictor, Predictor):
        predictor = model_or_predictor
    else:
        predictor = Predictor(
            model_or_predictor, mix_of_heads(datamodule, model_or_predictor), flip_test=flip_test
        )
    model = predictor.model
    was_training = model.training
    model.eval()
    heads = list(ae.index_map)
    skeletons = dict(ae.meta.get("datasets") or {})
    try:
        instances = {n: _train_instances(datamodule, n) for n in heads}
        chosen = select_pool({n: v for n, v in instances.items() if v}, pool, seed, min_labelled)
        poses, weights, sources, hid, hid_w, runs = [], [], [], [], [], {}
        for d, (name, idx) in enumerate(chosen.items()):
            if not len(idx):
                continue
            dataset = val_dataset(datamodule, name, instances[name])
            run = run_heads(
                predictor, dataset, heads, idx, batch_size, datamodule.dataset_entry(name).use_udp, name
            )
            runs[name] = run
            p, w = gather_union(
                {h: v[..., :2] for h, v in run.preds.items()},
                {h: v[..., 2] for h, v in run.preds.items()},
                ae.index_map,
                ae.n_joints,
            )
            poses.append(p)
            weights.append(w)
            sources.append(torch.full((len(idx),), d, dtype=torch.long))
            if skeletons and all(s in run.hidden for s in skeletons.values()):
                hp, hw = gather_union(
                    {h: run.hidden[skeletons[h]][..., :2] for h in heads},
                    {h: run.hidden[skeletons[h]][..., 2] for h in heads},
                    ae.index_map,
                    ae.n_joints,
                )
                hid.append(hp)
                hid_w.append(hw)
    finally:
        model.train(was_training)
    if not poses:
        raise ValueError(f"no training instance to collect pseudo-GT from in datasets {heads}")
    has_hidden = len(hid) == len(poses)
    return PseudoGT(
        poses=torch.cat(poses),
        weights=torch.cat(weights),
        sources=torch.cat(sources),
        datasets=list(chosen),
        hidden=torch.cat(hid) if has_hidden else None,
        hidden_weights=torch.cat(hid_w) if has_hidden else None,
        runs=runs,
    )


# --------------------------------------------------------------------------------------------------
# Fitting the AE
# --------------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """The fitted AE, the split (indices into the fitted poses), the loss history ``[(step, loss)]`` and the
    held-out per-joint error (crop-height units, confidence-weighted mean distance) with its mean."""

    ae: AffineCombiningAE
    train_idx: Tensor
    val_idx: Tensor
    history: list[tuple[int, float]]
    heldout_per_joint: Tensor
    heldout_mean: float


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny tensor ops on one thread: intra-op parallelism only adds synchronisation at these sizes (and
    costs a lot on a loaded machine). The previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _reconstruction_loss(ae: AffineCombiningAE, P: Tensor, w: Tensor) -> Tensor:
    """``sum_j w_j mean_c |P - AE(P)|_jc / sum_j w_j`` (the reference's weighted L1, mean over coordinates)."""
    err = (P - ae(P)).abs().mean(-1)
    return (w * err).sum() / w.sum().clamp_min(1e-12)


def heldout_error(ae: AffineCombiningAE, P: Tensor, w: Tensor) -> tuple[Tensor, float]:
    """Per-joint confidence-weighted mean distance ``|P_j - AE(P)_j|`` over poses, and its joint-weighted mean."""
    with torch.no_grad():
        dist = (P.double() - ae(P.double())).norm(dim=-1)
        w = w.double()
        per_joint = (w * dist).sum(0) / w.sum(0).clamp_min(1e-12)
        mean = float((w * dist).sum() / w.sum().clamp_min(1e-12))
    per_joint[w.sum(0) == 0] = float("nan")
    return per_joint, mean


def _centred(P: Tensor, w: Tensor) -> Tensor:
    """Poses minus their confidence-weighted mean joint (translation does not change the fit; conditioning does)."""
    c = (w.unsqueeze(-1) * P).sum(-2, keepdim=True) / w.sum(-1).clamp_min(1e-12)[..., None, None]
    return P - c


def fit_acae(
    poses: Tensor,
    weights: Tensor,
    ae: AffineCombiningAE,
    lam: float = 0.3,
    steps: int = 10000,
    batch_size: int = 256,
    lr: float = 3e-2,
    lr_drops: Sequence[float] = (0.4, 0.8),
    val_fraction: float = 0.1,
    seed: int = 0,
    log_every: int = 0,
) -> FitResult:
    """Fit ``ae`` (in place) to ``poses [N, J, 2]`` with per-joint ``weights [N, J]``.

    Loss: weighted L1 reconstruction (mean over coordinates) + ``lam * ae.l1_penalty()``; ``lam = 0.3`` is the
    official 0.6 scaled to crop-height units (reference §3.2.6). Adam at ``lr``, divided by 10 at each fraction
    of ``steps`` in ``lr_drops``. ``val_fraction`` of the poses (at least one when N > 1) are held out; the split
    and the minibatches come from ``seed``, so the result is a function of the inputs and the seed.
    """
    P = torch.as_tensor(poses, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).clamp_min(0.0)
    if P.dim() != 3 or P.shape[1] != ae.n_joints or w.shape != P.shape[:2]:
        raise ValueError(
            f"fit_acae: poses must be [N, {ae.n_joints}, D] and weights [N, {ae.n_joints}]; got "
            f"{tuple(P.shape)} and {tuple(w.shape)}"
        )
    if steps < 1 or batch_size < 1 or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"fit_acae: need steps >= 1, batch_size >= 1, 0 <= val_fraction < 1 (got {steps}, "
                         f"{batch_size}, {val_fraction})")  # fmt: skip
    P = _centred(P, w)
    g = torch.Generator().manual_seed(int(seed))
    n = P.shape[0]
    perm = torch.randperm(n, generator=g)
    n_val = min(n - 1, max(1 if n > 1 and val_fraction > 0 else 0, int(round(val_fraction * n))))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    Pt, wt = P[train_idx], w[train_idx]
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    bounds = [int(f * steps) for f in lr_drops]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=bounds, gamma=0.1)
    history: list[tuple[int, float]] = []
    full_batch = batch_size >= Pt.shape[0]  # small pools: every step sees every training pose
    ae.train()
    with _one_thread():
        for step in range(steps):
            if full_batch:
                Pb, wb = Pt, wt
            else:
                b = torch.randint(0, Pt.shape[0], (batch_size,), generator=g)
                Pb, wb = Pt[b], wt[b]
            loss = _reconstruction_loss(ae, Pb, wb) + lam * ae.l1_penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if log_every and (step % log_every == 0 or step == steps - 1):
                history.append((step, loss.item()))
                log.info("ACAE fit step %d/%d: loss %.5f", step + 1, steps, history[-1][1])
    ae.eval()
    if n_val:
        per_joint, mean = heldout_error(ae, P[val_idx], w[val_idx])
    else:
        per_joint, mean = torch.full((ae.n_joints,), float("nan"), dtype=torch.float64), float("nan")
    return FitResult(ae, train_idx, val_idx, history, per_joint, mean)


# --------------------------------------------------------------------------------------------------
# A new skeleton from the latents
# --------------------------------------------------------------------------------------------------


def _normalise_per_pose(Z: Tensor, T: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Subtract the target's mean labelled joint and divide by the std of its labelled y (PosePile's recipe);
    the same map for the latents, so the affine relation between them is unchanged. Returns ``(Z, T, usable)``:
    a pose with fewer than two labelled joints or no vertical spread (std below 1e-3 of the median pose's) has no
    scale; dividing by it would blow its rows up by orders of magnitude and let it dominate the fit, so it is
    marked unusable (``usable [N]`` False) and left unscaled."""
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    mean = (wn.unsqueeze(-1) * T).sum(-2, keepdim=True)
    var_y = (wn * (T[..., 1] - mean[..., 0, 1:2]) ** 2).sum(-1)
    std = var_y.sqrt()
    labelled = (w > 0).sum(-1)
    usable = (labelled >= 2) & (std > 1e-3 * std[labelled >= 2].median().clamp_min(1e-12))
    s = torch.where(usable, std, torch.ones_like(std))[..., None, None]
    return (Z - mean) / s, (T - mean) / s, usable


def fit_affine_map(
    latents: Tensor,
    targets: Tensor,
    weights: Tensor,
    lam: float = 0.1,
    iters: int = 3000,
    normalise: bool = True,
) -> Tensor:
    """``M [L, K]`` with every column summing to 1, minimising for each new joint ``k``
    ``1/(2 n_k) sum_n w_nk |Z_n^T M_k - T_nk|^2 + lam * 32 / L * |M_k|_1`` (PosePile ``solve_affine_lasso``).

    ``latents [N, L, D]`` (e.g. :meth:`AffineCombiningAE.project_latents` of the heads' union pose), ``targets
    [N, K, D]`` the new skeleton's annotations, ``weights [N, K]`` (0 = unlabelled). ``normalise``: per-pose
    normalisation first (see :func:`_normalise_per_pose`). Solved by ADMM (a linear KKT solve per step and a
    soft threshold), in float64.
    """
    Z = torch.as_tensor(latents, dtype=torch.float64)
    T = torch.as_tensor(targets, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).clamp_min(0.0)
    if Z.dim() != 3 or T.dim() != 3 or Z.shape[0] != T.shape[0] or w.shape != T.shape[:2]:
        raise ValueError(
            f"fit_affine_map: latents [N, L, D], targets [N, K, D], weights [N, K]; got {tuple(Z.shape)}, "
            f"{tuple(T.shape)}, {tuple(w.shape)}"
        )
    empty = (w.sum(0) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"fit_affine_map: new joints {empty} are never labelled; need annotations of every joint"
        )
    if normalise:
        Z, T, usable = _normalise_per_pose(Z, T, w)
        if not bool(usable.all()):
            log.warning(
                "fit_affine_map: %d of %d poses have fewer than two labelled joints or no vertical spread; they "
                "carry no scale and are left out of the fit (instances %s)",
                int((~usable).sum()), len(usable), (~usable).nonzero().flatten().tolist()[:10],
            )  # fmt: skip
            w = w * usable[:, None]
    L = Z.shape[1]
    lam_eff = float(lam) * 32.0 / L
    n_k = w.sum(0) * Z.shape[-1]  # rows per target: instances x coordinates
    H = torch.einsum("nk,nld,nmd->klm", w, Z, Z) / n_k[:, None, None]  # [K, L, L]
    b = torch.einsum("nk,nld,nkd->kl", w, Z, T) / n_k[:, None]  # [K, L]
    rho = H.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-8)[:, None]  # [K, 1]
    A = torch.linalg.inv(H + rho[..., None] * torch.eye(L, dtype=torch.float64))  # [K, L, L]
    one = torch.ones(L, dtype=torch.float64)
    A1 = A @ one  # [K, L]
    denom = A1.sum(-1, keepdim=True)
    beta = torch.full_like(b, 1.0 / L)
    z, u = beta.clone(), torch.zeros_like(b)
    with _one_thread():
        beta, z, u = _admm(A, A1, denom, b, rho, beta, z, u, lam_eff, int(iters))
    return beta.transpose(0, 1).contiguous()  # [L, K], columns sum to 1 exactly (up to rounding)


def _admm(A, A1, denom, b, rho, beta, z, u, lam_eff, iters):  # noqa: ANN001, ANN202 - internal loop
    """ADMM iterations of :func:`fit_affine_map` (beta: the constrained least-squares step; z: the l1 prox)."""
    for _ in range(iters):
        rhs = b + rho * (z - u)
        x = torch.einsum("klm,km->kl", A, rhs)
        mu = (x.sum(-1, keepdim=True) - 1.0) / denom
        beta = x - mu * A1  # (H + rho I) beta + mu 1 = rhs, 1^T beta = 1
        z = torch.sign(beta + u) * (beta + u).abs().sub(lam_eff / rho).clamp_min(0.0)
        u = u + beta - z
    return beta, z, u


LATENT_SOURCES = ("encoder", "projection")


def new_skeleton_keypoints(
    ae: AffineCombiningAE, mapping: Tensor, pose: Tensor, weights: Tensor, latents: str = "encoder"
) -> tuple[Tensor, Tensor]:
    """A new skeleton's joints from the heads' union ``pose [..., J, D]`` (any units: the maps are affine) with
    confidences ``weights [..., J]``: the pose's latents mapped by ``mapping [L, K]``. ``latents``: ``encoder``
    (the AE's encoder on the whole union, as the reference's pseudo-GT path; every head predicts every joint) or
    ``projection`` (:meth:`AffineCombiningAE.project_latents`, confidence-weighted; ill-determined when L is close
    to J, where it reached 1e4 crop heights on real predictions; kept for AE files written before the switch).
    Scores: each new joint's confidence is the mean of the union weights through the absolute weights of
    ``enc @ mapping``."""
    if latents not in LATENT_SOURCES:
        raise ValueError(f"latents={latents!r}: one of {LATENT_SOURCES}")
    Z = ae.encode(pose) if latents == "encoder" else ae.project_latents(pose, weights)
    M = torch.as_tensor(mapping, dtype=torch.float64, device=Z.device)
    coords = torch.einsum("...ld,lk->...kd", Z.to(torch.float64), M).to(pose.dtype)
    with torch.no_grad():
        reach = (ae.encoder_weights() @ M).abs()  # [J, K]
        reach = reach / reach.sum(0, keepdim=True).clamp_min(1e-12)
        scores = torch.einsum("...j,jk->...k", weights.to(torch.float64), reach).to(pose.dtype)
    return coords, scores


# --------------------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------------------


def hidden_union(instances: Sequence[Any], ae: AffineCombiningAE) -> tuple[Tensor, Tensor]:
    """The hidden all-skeleton ground truth (``extra_gt``, synthetic world) of ``instances`` in ``ae``'s union,
    each pose relative to its box centre in units of the box's larger side: ``[N, J, 2]`` and labelled weights
    ``[N, J]``. No model needed: what the oracle fits when no pseudo-GT run is at hand."""
    skeletons = dict(ae.meta.get("datasets") or {})
    if not skeletons:
        raise ValueError("the AE has no dataset -> skeleton table; build it with AffineCombiningAE.for_mix")
    lacking = [i.ann_id for i in instances if not all(s in i.extra_gt for s in skeletons.values())]
    if lacking:
        raise ValueError(
            f"instances {lacking[:5]} (of {len(lacking)}) have no hidden ground truth for skeletons "
            f"{sorted(set(skeletons.values()))}; the oracle needs the synthetic world's extra_gt"
        )
    box = torch.as_tensor(np.stack([np.asarray(i.bbox, np.float64) for i in instances]))
    center = box[:, :2] + box[:, 2:] / 2
    side = box[:, 2:].max(-1).values.clamp_min(1.0)
    scale = torch.stack([side, side], -1)
    per_head = {}
    for ds, skel in skeletons.items():
        raw = torch.as_tensor(np.stack([np.asarray(i.extra_gt[skel], np.float64) for i in instances]))
        per_head[ds] = (to_crop_units(raw, center, scale), (raw[..., 2] > 0).double())
    return gather_union(
        {d: v[0] for d, v in per_head.items()},
        {d: v[1] for d, v in per_head.items()},
        ae.index_map,
        ae.n_joints,
    )


def oracle_report(aes: Mapping[str, AffineCombiningAE], hidden: Tensor, weights: Tensor) -> dict[str, Any]:
    """Residual of each AE on hidden ground truth poses ``[N, J, 2]`` (labelled joints only): ``{name:
    {"residual": mean distance, "per_joint": {joint: distance}}}`` in the poses' units. Pass held-out poses
    (not those the AEs were fitted on) to compare a pseudo-GT AE with the oracle AE fitted on hidden GT."""
    out: dict[str, Any] = {}
    P = _centred(hidden.double(), weights.double())
    for name, ae in aes.items():
        per_joint, mean = heldout_error(ae, P, weights)
        out[name] = {
            "residual": mean,
            "per_joint": {j: float(v) for j, v in zip(ae.joint_names, per_joint.tolist(), strict=True)},
        }
    return out
