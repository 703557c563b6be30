"""The affine-combining autoencoder (ACAE) of Sárándi et al. (WACV 2023), in 2D.

The AE maps the union of a mix's skeletons (``J`` joints of one family) to ``L`` latent *points* and back. Both
maps are affine combinations: every latent is a weighted sum of joints whose weights sum to 1 (negative weights
allowed, so a latent may lie outside the joints' convex hull), and every reconstructed joint a weighted sum of
latents with weights summing to 1. Hence the AE commutes with every global affine map of the plane
(translation, rotation, scale, shear) and acts on each coordinate axis alike.

Parameterisation (as the official ``acae.py``): free raw weights, initialised ``U(-0.1, 1)``, each output point's
weight vector divided by its sum (not a softmax). Chirality tying: joints are split into left/right pairs
(``partners``) and central joints, latents into sided pairs and central latents, and the raw matrix is built from
five shared blocks ``S`` (same side), ``Q`` (other side), ``X`` (sided -> central), ``C`` (central -> sided) and
``Z`` (central -> central)::

                 out-left  out-right  out-centre
    in-left   [    S         Q          X     ]
    in-right  [    Q         S          X     ]
    in-centre [    C         C          Z     ]

so swapping left and right joints *and* latents leaves the matrix unchanged: mirroring a pose (swap partners,
negate x) gives exactly the mirrored reconstruction. The decoder is built the same way with its own blocks.

Matrices are stored input-major as in the official code: ``encoder_weights()`` is ``[J, L]`` (each column sums
to 1), ``decoder_weights()`` is ``[L, J]`` (each column sums to 1), ``reconstruction_weights()`` = enc @ dec.

:meth:`AffineCombiningAE.for_mix` builds the union of a mix's skeletons of one family from the skeletons'
semantic tags (:mod:`multipose.skeletons`) and returns the index map ``{dataset: LongTensor[K_d]}`` into it.
:func:`save_ae` / :func:`load_ae` write and read an AE file (``{"describe", "state_dict"}``, atomic); loading
checks the file against the expected joints and says what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "AEFileError",
    "AffineCombiningAE",
    "FAMILIES",
    "MERGE_MODES",
    "PARTS",
    "family_aes",
    "gather_union",
    "load_ae",
    "mix_families",
    "save_ae",
    "skeleton_family",
    "tag_family",
    "tag_part",
]

FILE_VERSION = 1
PARTS = ("body", "face", "hand")
FAMILIES = ("human", "animal")
#: how joints of different skeletons with the same semantic tag enter the union
MERGE_MODES = ("safe", "all", "none")

_HAND_WORDS = ("hand_root", "thumb", "finger")


class AEFileError(ValueError):
    """An AE file is unreadable or does not fit the mix it is used with (the message says what differs)."""


# --------------------------------------------------------------------------------------------------
# Families and parts, read from the semantic tags
# --------------------------------------------------------------------------------------------------


def tag_family(tag: str) -> str:
    """``animal`` for the quadruped tags (``animal_*``), ``human`` for every other tag."""
    return "animal" if tag.startswith("animal_") else "human"


def tag_part(tag: str) -> str:
    """``face`` (``face_*`` landmarks), ``hand`` (hand roots, thumbs, fingers) or ``body`` (everything else,
    feet included, as the reference's body+feet set)."""
    if tag.startswith("face_"):
        return "face"
    if any(w in tag for w in _HAND_WORDS):
        return "hand"
    return "body"


def skeleton_family(skeleton: Any) -> str:
    """``animal`` for a skeleton with any shared quadruped tag (``animal_*``: AP-10K, Animal-Pose, whose own extra
    tags are ``animalpose_*``), else ``human``. Every joint of a skeleton belongs to its skeleton's family."""
    from multipose.skeletons import get_skeleton

    tags = get_skeleton(skeleton).semantic
    return "animal" if any(tag_family(t) == "animal" for t in tags) else "human"


def mix_families(skeletons: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{family: [dataset, ...]}`` in mix order. A family with one skeleton gets no AE (nothing to bridge)."""
    out: dict[str, list[str]] = {}
    for ds, skel in skeletons.items():
        out.setdefault(skeleton_family(skel), []).append(ds)
    return out


def family_aes(
    skeletons: Mapping[str, Any], parts: Sequence[str] = ("body",), merge: str = "safe", **kw: Any
) -> dict[str, tuple[AffineCombiningAE, dict[str, Tensor]]]:
    """One ``(ae, index_map)`` per family of the mix that has at least two different skeletons (a family with one
    skeleton has nothing to bridge and gets no AE), in :func:`mix_families` order."""
    from multipose.skeletons import get_skeleton

    out = {}
    for family, datasets in mix_families(skeletons).items():
        if len({get_skeleton(skeletons[d]).name for d in datasets}) < 2:
            continue
        out[family] = AffineCombiningAE.for_mix(
            {d: skeletons[d] for d in datasets}, family, parts, merge, **kw
        )
    return out


# --------------------------------------------------------------------------------------------------
# Chirality-tied weight matrices
# --------------------------------------------------------------------------------------------------


def _split_partners(partners: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """Firsts and seconds of each left/right pair (by index order) and the central joints."""
    n = len(partners)
    first, second, centre = [], [], []
    for j, p in enumerate(partners):
        if not 0 <= int(p) < n:
            raise ValueError(f"partners[{j}] = {p} is not a joint index (0..{n - 1})")
        if int(partners[int(p)]) != j:
            raise ValueError(
                f"partners must be symmetric: partners[{j}] = {p} but partners[{p}] = {partners[int(p)]}"
            )
        if p == j:
            centre.append(j)
        elif j < p:
            first.append(j)
            second.append(int(p))
    return first, second, centre


class _ChiralMatrix(nn.Module):
    """A raw ``[n_in, n_out]`` matrix from the five shared blocks, in the callers' index order.

    ``in_pairs``/``out_pairs``: number of left/right pairs; ``in_centre``/``out_centre``: central counts.
    ``in_order``/``out_order``: the permutation from the block order ``[first..., second..., centre...]`` to the
    caller's order (``matrix[in_order[a], out_order[b]] = block_matrix[a, b]``).
    """

    def __init__(
        self,
        in_pairs: int,
        in_centre: int,
        out_pairs: int,
        out_centre: int,
        in_order: Sequence[int],
        out_order: Sequence[int],
        generator: torch.Generator,
    ) -> None:
        super().__init__()

        def block(r: int, c: int) -> nn.Parameter:
            # U(-0.1, 1): positive mean keeps the column sums away from 0 (official init)
            return nn.Parameter(
                torch.rand(r, c, generator=generator, dtype=torch.float64).mul_(1.1).sub_(0.1)
            )

        self.S = block(in_pairs, out_pairs)
        self.Q = block(in_pairs, out_pairs)
        self.X = block(in_pairs, out_centre)
        self.C = block(in_centre, out_pairs)
        self.Z = block(in_centre, out_centre)
        n_in, n_out = 2 * in_pairs + in_centre, 2 * out_pairs + out_centre
        # inverse permutations: block index of each caller index
        inv_in = torch.empty(n_in, dtype=torch.long)
        inv_in[torch.as_tensor(list(in_order), dtype=torch.long)] = torch.arange(n_in)
        inv_out = torch.empty(n_out, dtype=torch.long)
        inv_out[torch.as_tensor(list(out_order), dtype=torch.long)] = torch.arange(n_out)
        self.register_buffer("inv_in", inv_in, persistent=False)
        self.register_buffer("inv_out", inv_out, persistent=False)

    def forward(self, normalise: bool = True) -> Tensor:
        """The matrix in the callers' order; with ``normalise`` every column divided by its sum.

        The column sums are formed block-wise (``S + Q`` equals ``Q + S`` bit for bit), so the normalised matrix
        is exactly invariant under the left/right swap, not only up to rounding.
        """
        S, Q, X, C, Z = self.S, self.Q, self.X, self.C, self.Z
        if normalise:
            sided = (S.sum(0) + Q.sum(0)) + C.sum(0)
            centre = (X.sum(0) + X.sum(0)) + Z.sum(0)
            S, Q, C = S / sided, Q / sided, C / sided
            X, Z = X / centre, Z / centre
        top = torch.cat([S, Q, X], dim=1)
        mid = torch.cat([Q, S, X], dim=1)
        bot = torch.cat([C, C, Z], dim=1)
        full = torch.cat([top, mid, bot], dim=0)
        return full[self.inv_in][:, self.inv_out]


# --------------------------------------------------------------------------------------------------
# The autoencoder
# --------------------------------------------------------------------------------------------------


class AffineCombiningAE(nn.Module):
    """Affine-combining autoencoder over ``J`` named joints with left/right ``partners``.

    Args:
        joint_names: the union's joint names (unique).
        partners: ``partners[j]`` = index of joint j's mirror partner, or ``j`` for a central joint (symmetric).
        n_latent: number of latent points ``L``.
        n_latent_sided: how many of them come in left/right pairs (even); default ``2 * round(3 L / 8)`` (24 of
            32, the reference's 2D recipe), 0 when no joint has a partner.
        init: ``uniform`` (raw weights ``U(-0.1, 1)``, the official initialisation).
        seed: seed of the initialisation (a local generator; the global RNG is not touched).

    Weights are float64 parameters (the model is tiny; the projections solve small linear systems); inputs of
    any float dtype are accepted and results are returned in the input's dtype.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        partners: Sequence[int],
        n_latent: int = 32,
        n_latent_sided: int | None = None,
        init: str = "uniform",
        seed: int = 0,
    ) -> None:
        super().__init__()
        names = tuple(str(n) for n in joint_names)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"joint_names must be unique; repeated: {dup}")
        if len(partners) != len(names):
            raise ValueError(f"partners has {len(partners)} entries but there are {len(names)} joints")
        if init != "uniform":
            raise ValueError(
                f"init={init!r}: the only initialisation is 'uniform' (U(-0.1, 1), as the official code)"
            )
        first, second, centre = _split_partners([int(p) for p in partners])
        n_latent = int(n_latent)
        if n_latent_sided is None:
            n_latent_sided = 2 * round(3 * n_latent / 8) if first else 0
        n_latent_sided = int(n_latent_sided)
        if n_latent < 1 or n_latent_sided < 0 or n_latent_sided > n_latent or n_latent_sided % 2:
            raise ValueError(
                f"n_latent={n_latent}, n_latent_sided={n_latent_sided}: need 0 <= n_latent_sided <= n_latent, "
                "n_latent_sided even (latents come in left/right pairs) and n_latent >= 1"
            )
        if n_latent_sided and not first:
            raise ValueError(
                f"n_latent_sided={n_latent_sided} but no joint has a left/right partner; use n_latent_sided=0"
            )
        self.joint_names: tuple[str, ...] = names
        self.partners: tuple[int, ...] = tuple(int(p) for p in partners)
        self.n_joints = len(names)
        self.n_latent = n_latent
        self.n_latent_sided = n_latent_sided
        self.init = init
        self.seed = int(seed)
        self.index_map: dict[str, Tensor] = {}
        self.meta: dict[str, Any] = {}  # family, parts, merge, datasets (set by for_mix)

        lp = n_latent_sided // 2
        lc = n_latent - n_latent_sided
        joint_order = first + second + centre
        latent_order = list(range(n_latent))  # latents: [left pairs, right pairs, centre]
        gen = torch.Generator().manual_seed(self.seed)
        self.enc_raw = _ChiralMatrix(len(first), len(centre), lp, lc, joint_order, latent_order, gen)
        self.dec_raw = _ChiralMatrix(lp, lc, len(first), len(centre), latent_order, joint_order, gen)
        latent_partners = [*range(lp, 2 * lp), *range(lp), *range(2 * lp, n_latent)]
        self.latent_partners: tuple[int, ...] = tuple(latent_partners)

    # ------------------------------------------------------------------ weights
    def encoder_weights(self) -> Tensor:
        """``[J, L]``: latent ``l`` = sum_j enc[j, l] * P_j; every column sums to 1."""
        return self.enc_raw()

    def decoder_weights(self) -> Tensor:
        """``[L, J]``: joint ``j`` = sum_l dec[l, j] * Z_l; every column sums to 1."""
        return self.dec_raw()

    def reconstruction_weights(self) -> Tensor:
        """``[J, J]`` = enc @ dec (the official ``W_rec``: ``P_hat = einsum('...jd,jk->...kd', P, W_rec)``)."""
        return self.encoder_weights() @ self.decoder_weights()

    # ------------------------------------------------------------------ maps
    def _check(self, P: Tensor, n: int, what: str) -> None:
        if P.dim() < 2 or P.shape[-2] != n:
            raise ValueError(f"{what}: expected [..., {n}, D], got shape {tuple(P.shape)}")

    def encode(self, P: Tensor) -> Tensor:
        """``[..., J, D]`` -> ``[..., L, D]`` latent points."""
        self._check(P, self.n_joints, "encode")
        return torch.einsum("...jd,jl->...ld", P.to(torch.float64), self.encoder_weights()).to(P.dtype)

    def decode(self, Z: Tensor) -> Tensor:
        """``[..., L, D]`` -> ``[..., J, D]`` joints."""
        self._check(Z, self.n_latent, "decode")
        return torch.einsum("...ld,lj->...jd", Z.to(torch.float64), self.decoder_weights()).to(Z.dtype)

    def forward(self, P: Tensor) -> Tensor:
        """``decode(encode(P))``, in one product with :meth:`reconstruction_weights`."""
        self._check(P, self.n_joints, "forward")
        return torch.einsum("...jd,jk->...kd", P.to(torch.float64), self.reconstruction_weights()).to(P.dtype)

    def project_latents(self, P: Tensor, weights: Tensor, ridge: float = 1e-8) -> Tensor:
        """Latents of the confidence-weighted projection (see :meth:`project`): ``[..., L, D]``.

        ``Z = argmin_Z sum_j w_j |P_j - (dec^T Z)_j|^2 + eps |Z - c|^2``, where ``c`` is the weighted mean joint of
        the pose (an affine-equivariant anchor for latents the weighted joints do not determine) and ``eps`` is
        ``ridge`` times the mean diagonal of the normal matrix. Solved in float64, per pose.
        """
        self._check(P, self.n_joints, "project")
        w = torch.as_tensor(weights, device=P.device).to(torch.float64).clamp_min(0.0)
        if w.shape != P.shape[:-1]:
            raise ValueError(f"project: weights must have shape {tuple(P.shape[:-1])}, got {tuple(w.shape)}")
        x = P.to(torch.float64)
        A = self.decoder_weights().transpose(0, 1)  # [J, L]: P ~ A @ Z
        wsum = w.sum(-1, keepdim=True)
        uniform = torch.full_like(w, 1.0 / self.n_joints)
        wn = torch.where(wsum > 0, w / wsum.clamp_min(1e-300), uniform)  # weights scaled to sum 1
        centre = (wn.unsqueeze(-1) * x).sum(-2, keepdim=True)  # [..., 1, D]
        normal = torch.einsum("jl,...j,jm->...lm", A, wn, A)  # [..., L, L]
        eps = ridge * normal.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
        eye = torch.eye(self.n_latent, dtype=torch.float64, device=P.device)
        lhs = normal + eps[..., None, None] * eye
        rhs = torch.einsum("jl,...j,...jd->...ld", A, wn, x) + eps[..., None, None] * centre
        return torch.linalg.solve(lhs, rhs).to(P.dtype)

    def project(self, P: Tensor, weights: Tensor, ridge: float = 1e-8) -> Tensor:
        """Confidence-weighted projection onto the AE's range: ``decode(project_latents(P, weights))``.

        Joints with weight 0 are predicted purely from the others; a pose already in the range comes back
        unchanged (up to the tiny ``ridge``); weights all zero give the pose's mean joint everywhere.
        """
        Z = self.project_latents(P, weights, ridge)
        return torch.einsum("...ld,lj->...jd", Z.to(torch.float64), self.decoder_weights()).to(P.dtype)

    def l1_penalty(self) -> Tensor:
        """``mean|enc| + mean|dec|`` over the normalised matrices (the official sparsity term, times lambda)."""
        return self.encoder_weights().abs().mean() + self.decoder_weights().abs().mean()

    # ------------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild the AE (stored with its weights) and to check it against a mix."""
        return {
            "version": FILE_VERSION,
            "joint_names": list(self.joint_names),
            "partners": list(self.partners),
            "n_joints": self.n_joints,
            "n_latent": self.n_latent,
            "n_latent_sided": self.n_latent_sided,
            "init": self.init,
            "seed": self.seed,
            "index_map": {ds: [int(i) for i in idx.tolist()] for ds, idx in self.index_map.items()},
            **{k: v for k, v in self.meta.items() if k not in ("index_map",)},
        }

    @classmethod
    def from_describe(cls, desc: Mapping[str, Any]) -> AffineCombiningAE:
        """An AE of the described shape (initial weights; load the state dict next)."""
        ae = cls(
            desc["joint_names"],
            desc["partners"],
            n_latent=int(desc["n_latent"]),
            n_latent_sided=int(desc["n_latent_sided"]),
            init=str(desc.get("init", "uniform")),
            seed=int(desc.get("seed", 0)),
        )
        ae.index_map = {
            ds: torch.as_tensor(v, dtype=torch.long) for ds, v in (desc.get("index_map") or {}).items()
        }
        known = {"version", "joint_names", "partners", "n_joints", "n_latent", "n_latent_sided", "init", "seed",
                 "index_map"}  # fmt: skip
        ae.meta = {k: v for k, v in desc.items() if k not in known}
        return ae

    # ------------------------------------------------------------------ the union of a mix
    @classmethod
    def for_mix(
        cls,
        skeletons: Mapping[str, Any],
        family: str = "human",
        parts: Sequence[str] = ("body",),
        merge: str = "safe",
        **kw: Any,
    ) -> tuple[AffineCombiningAE, dict[str, Tensor]]:
        """The AE over the union of the mix's joints of one ``family`` and the index map into it.

        Args:
            skeletons: ``{dataset: Skeleton or skeleton name}`` in mix order.
            family: ``human`` or ``animal`` (see :func:`skeleton_family`); datasets of other families are left out.
            parts: which parts of the skeletons enter the union (``body`` (feet included), ``face``, ``hand``).
            merge: how joints with the same semantic tag in different skeletons enter the union:
                ``safe`` (default) — one union joint per tag for the tags the vocabulary marks ``vote: safe``; the
                ``approx`` tags (shoulders, hips, head top), whose definitions differ between datasets, stay one
                joint per dataset (``<tag>@<dataset>``); ``all`` — one joint per tag, always; ``none`` — every
                dataset's joints are separate (the reference's per-head union).
            **kw: :class:`AffineCombiningAE` arguments (``n_latent``, ``n_latent_sided``, ``seed``).

        Returns:
            ``(ae, index_map)`` with ``index_map[dataset]`` a ``LongTensor[K_d]`` of union indices, ``-1`` for
            joints of parts not selected. Only datasets with at least one joint in the union appear. The map is
            also kept as ``ae.index_map`` and in :meth:`describe`.
        """
        from multipose.skeletons import active_vocabulary, get_skeleton

        if family not in FAMILIES:
            raise ValueError(f"family={family!r}: choose one of {FAMILIES}")
        bad = [p for p in parts if p not in PARTS]
        if bad or not parts:
            raise ValueError(f"parts={list(parts)}: choose a non-empty subset of {PARTS}")
        if merge not in MERGE_MODES:
            raise ValueError(f"merge={merge!r}: choose one of {MERGE_MODES}")
        vocab = active_vocabulary()

        def merged(tag: str) -> bool:
            return merge == "all" or (merge == "safe" and vocab.vote.get(tag, "safe") == "safe")

        names: list[str] = []
        mirror_name: dict[str, str] = {}
        index_map: dict[str, Tensor] = {}
        skel_names: dict[str, str] = {}
        for ds, skel in skeletons.items():
            skel = get_skeleton(skel)
            if skeleton_family(skel) != family:
                continue
            idx = []
            for tag in skel.semantic:
                if tag_part(tag) not in parts:
                    idx.append(-1)
                    continue
                mtag = vocab.mirror_of(tag)
                name = tag if merged(tag) else f"{tag}@{ds}"
                mname = mtag if merged(mtag) else f"{mtag}@{ds}"
                if name not in mirror_name:
                    names.append(name)
                    mirror_name[name] = mname
                idx.append(names.index(name))
            if any(i >= 0 for i in idx):
                index_map[str(ds)] = torch.as_tensor(idx, dtype=torch.long)
                skel_names[str(ds)] = skel.name
        if not names:
            raise ValueError(
                f"no joint of family '{family}' and parts {list(parts)} in the mix "
                f"({ {ds: get_skeleton(s).name for ds, s in skeletons.items()} })"
            )
        position = {n: i for i, n in enumerate(names)}
        partners = []
        for n in names:
            m = mirror_name[n]
            if m not in position:
                raise ValueError(
                    f"union joint '{n}' mirrors to '{m}', which is not in the union (parts {list(parts)}); "
                    "select the parts that hold both sides"
                )
            partners.append(position[m])
        ae = cls(names, partners, **kw)
        ae.index_map = index_map
        ae.meta = {"family": family, "parts": list(parts), "merge": merge, "datasets": skel_names}
        return ae, index_map


# --------------------------------------------------------------------------------------------------
# Per-head poses <-> the union
# --------------------------------------------------------------------------------------------------


def gather_union(
    poses: Mapping[str, Tensor], weights: Mapping[str, Tensor], index_map: Mapping[str, Tensor], n_joints: int
) -> tuple[Tensor, Tensor]:
    """Per-head poses ``{head: [..., K_h, D]}`` with weights ``{head: [..., K_h]}`` -> the union pose
    ``[..., J, D]`` and weight ``[..., J]``.

    A union joint seen by several heads is their confidence-weighted mean (weight: the mean of their weights, so
    it stays in the heads' confidence scale); a joint no head sees gets coordinates 0 and weight 0. Heads not in
    ``index_map`` are ignored.
    """
    acc = wsum = count = None
    for head, pose in poses.items():
        if head not in index_map:
            continue
        idx = index_map[head].to(pose.device)
        keep = idx >= 0
        tgt = idx[keep]
        p = pose[..., keep, :].to(torch.float64)
        w = weights[head][..., keep].to(torch.float64).clamp_min(0.0)
        if acc is None:
            lead = p.shape[:-2]
            acc = p.new_zeros(*lead, n_joints, p.shape[-1])
            wsum = p.new_zeros(*lead, n_joints)
            count = p.new_zeros(*lead, n_joints)
        acc.index_add_(-2, tgt, p * w.unsqueeze(-1))
        wsum.index_add_(-1, tgt, w)
        count.index_add_(-1, tgt, torch.ones_like(w))
    if acc is None:
        raise ValueError(f"none of the heads {list(poses)} is in the index map ({list(index_map)})")
    pose = acc / wsum.clamp_min(1e-12).unsqueeze(-1)
    weight = torch.where(count > 0, wsum / count.clamp_min(1.0), torch.zeros_like(wsum))
    return pose, weight


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def save_ae(path: str | Path, ae: AffineCombiningAE, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"describe", "state_dict", **extra}`` atomically (temporary file + rename)."""
    from multipose.utils.checkpointing import replace_atomic, temp_path_next_to

    path = Path(path)
    tmp = temp_path_next_to(path)
    try:
        state = {k: v.detach().cpu() for k, v in ae.state_dict().items()}
        torch.save({"describe": ae.describe(), "state_dict": state, **dict(extra or {})}, tmp)
        replace_atomic(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_ae(
    path: str | Path, expect: AffineCombiningAE | Mapping[str, Any] | None = None
) -> tuple[AffineCombiningAE, dict[str, Any]]:
    """Read an AE file; returns the AE and the file's other entries (e.g. ``extra_skeletons``).

    ``expect`` (an AE built for the current mix, or its :meth:`~AffineCombiningAE.describe`) is checked against
    the file: joint count, joint names, the datasets and their skeletons; a mismatch raises :class:`AEFileError`
    naming the file and what differs.
    """
    path = Path(path)
    if not path.is_file():
        raise AEFileError(f"{path}: AE file not found; write one with `python -m multipose.acae fit ...`")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise AEFileError(f"{path}: not a readable AE file ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict) or "describe" not in raw or "state_dict" not in raw:
        raise AEFileError(
            f"{path}: not an AE file (expected a dict with 'describe' and 'state_dict', as written by "
            "multipose.bridges.acae_model.save_ae)"
        )
    desc = raw["describe"]
    if expect is not None:
        want = expect.describe() if isinstance(expect, AffineCombiningAE) else dict(expect)
        check_description(desc, want, str(path))
    try:
        ae = AffineCombiningAE.from_describe(desc)
        ae.load_state_dict(raw["state_dict"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise AEFileError(f"{path}: the AE description and weights do not fit together ({err})") from None
    return ae, {k: v for k, v in raw.items() if k not in ("describe", "state_dict")}


def check_description(have: Mapping[str, Any], want: Mapping[str, Any], where: str) -> None:
    """Raise :class:`AEFileError` naming the first difference between an AE file's description and the mix's."""
    hn, wn = list(have.get("joint_names", [])), list(want.get("joint_names", []))
    hd, wd = dict(have.get("datasets") or {}), dict(want.get("datasets") or {})
    if hd and wd and hd != wd:
        only_file = sorted(set(hd) - set(wd))
        only_mix = sorted(set(wd) - set(hd))
        changed = sorted(k for k in set(hd) & set(wd) if hd[k] != wd[k])
        raise AEFileError(
            f"{where}: the AE was fitted for another mix: datasets only in the file {only_file}, only in the mix "
            f"{only_mix}, other skeleton {[f'{k}: {hd[k]} -> {wd[k]}' for k in changed]}; refit it with "
            "`python -m multipose.acae fit` on this mix"
        )
    if len(hn) != len(wn):
        raise AEFileError(
            f"{where}: the AE has {len(hn)} joints but the mix's union has {len(wn)}; "
            f"missing in the file: {sorted(set(wn) - set(hn))[:10]}, extra in the file: {sorted(set(hn) - set(wn))[:10]}"
        )
    if hn != wn:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(hn, wn, strict=True)) if a != b]
        i, a, b = diff[0]
        raise AEFileError(
            f"{where}: joint names differ from the mix's union at {len(diff)} place(s), first at index {i}: "
            f"file '{a}' vs mix '{b}'; refit the AE for this mix (same family, parts and merge mode)"
        )
    for key in ("family", "merge", "parts"):
        if key in have and key in want and have[key] != want[key]:
            raise AEFileError(f"{where}: AE {key} is {have[key]!r} but {want[key]!r} is expected")
