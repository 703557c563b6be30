"""Knowledge tokens (ViTPose §3.4 "transferability"): K learnable vectors appended to the patch tokens.

Sequence layout: ``[patch tokens (h*w, with the grid position embedding) ; knowledge tokens (K, no position
embedding)]``. The blocks attend over all ``h*w + K`` tokens; the knowledge tokens are dropped before
``last_norm`` and the reshape to the ``[B, C, h, w]`` feature map, so the output shape and every head are
unchanged. Attention has no notion of order, so *where* the tokens sit in the sequence does not matter.

:class:`KnowledgeTokenBackbone` is a :class:`~multipose.models.vit.ViTPoseBackbone` that shares the weights of
an existing backbone and adds one parameter, ``knowledge_token`` ``[1, K, C]``. Its ``state_dict`` keys are the
backbone's keys plus ``knowledge_token``, so layer decay, checkpoint loading and ``merge_experts`` keep working.
The token is a parameter with ``requires_grad=trainable`` (frozen tokens stay out of optimiser groups and DDP).

Width change (teacher C_t -> student C_s): the paper transfers a ViT-L token into ViT-B without saying how the
width is matched. :func:`project_token` offers a fixed, seeded, semi-orthogonal map (never trained; applying a
frozen map once to a frozen token is the same as applying it in the network). Without it a width mismatch is an
error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from multipose.models.vit import ViTPoseBackbone

__all__ = [
    "KnowledgeTokenBackbone",
    "attach_knowledge_tokens",
    "project_token",
    "save_knowledge_token",
    "load_knowledge_token",
    "PROJECTIONS",
]

PROJECTIONS = ("none", "orthogonal")
_TOKEN_KEY = "knowledge_token"
_FORMAT_VERSION = 1


class KnowledgeTokenBackbone(ViTPoseBackbone):
    """``backbone`` with ``num_tokens`` knowledge tokens appended after patch + position embedding.

    Args:
        backbone: a :class:`ViTPoseBackbone` (any FFN variant). Its tensors are shared, not copied; use this
            module in its place (e.g. :func:`attach_knowledge_tokens`).
        num_tokens: K (>= 1); ignored when ``token`` is given.
        token: initial value ``[K, C]`` or ``[1, K, C]`` with ``C == backbone.embed_dim``; default
            ``trunc_normal(std=0.02)``.
        trainable: ``requires_grad`` of the token.

    ``forward(x [B,3,H,W], dataset_idx [B] | None) -> [B, C, h, w]`` exactly like the backbone.
    """

    def __init__(
        self,
        backbone: ViTPoseBackbone,
        num_tokens: int = 1,
        token: Tensor | None = None,
        trainable: bool = True,
    ) -> None:
        if not isinstance(backbone, ViTPoseBackbone):
            raise TypeError(f"knowledge tokens need a ViTPoseBackbone, got {type(backbone).__name__}")
        if isinstance(backbone, KnowledgeTokenBackbone):
            raise ValueError("this backbone already carries knowledge tokens; wrap the plain backbone")
        flags = {name: p.requires_grad for name, p in backbone.named_parameters()}
        with torch.device("meta"):  # same construction as the backbone, then adopt its tensors
            super().__init__(**backbone.config)
        self.load_state_dict(backbone.state_dict(keep_vars=True), strict=True, assign=True)
        for name, flag in flags.items():  # assign=True resets requires_grad: keep the source's flags
            self.get_parameter(name).requires_grad_(flag)
        if token is None:
            if int(num_tokens) < 1:
                raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
            token = torch.empty(1, int(num_tokens), self.embed_dim, device=backbone.pos_embed.device)
            nn.init.trunc_normal_(token, std=0.02)
        else:
            token = _as_token(token, self.embed_dim).to(backbone.pos_embed.device)
        self.knowledge_token = nn.Parameter(token.detach().clone().to(backbone.pos_embed.dtype), trainable)
        self.train(backbone.training)

    @property
    def num_tokens(self) -> int:
        return int(self.knowledge_token.shape[1])

    @property
    def trainable(self) -> bool:
        return bool(self.knowledge_token.requires_grad)

    def fixed_tokens(self, batch_size: int, dtype: torch.dtype) -> Tensor:
        """The knowledge tokens of every sample, ``[B, K, C]`` (no position embedding); the backbone's forward
        appends them after the patch tokens (before any prompt tokens) and drops them before ``last_norm``."""
        return self.knowledge_token.to(dtype).expand(batch_size, -1, -1)

    def without_token(self) -> ViTPoseBackbone:
        """The plain backbone (shared tensors, no token)."""
        with torch.device("meta"):
            plain = ViTPoseBackbone(**self.config)
        state = {k: v for k, v in self.state_dict(keep_vars=True).items() if k != _TOKEN_KEY}
        plain.load_state_dict(state, strict=True, assign=True)
        return plain.train(self.training)

    def merge_experts(self, task: int) -> KnowledgeTokenBackbone:
        """Dense single-task copy (see :meth:`ViTPoseBackbone.merge_experts`) that keeps the knowledge token."""
        merged = self.without_token().merge_experts(task)
        return KnowledgeTokenBackbone(
            merged, token=self.knowledge_token.detach().clone(), trainable=self.trainable
        )


def _as_token(token: Tensor, embed_dim: int, source: str = "token") -> Tensor:
    """``[K, C]`` or ``[1, K, C]`` -> ``[1, K, C]``; clear error on another shape or width."""
    if not isinstance(token, Tensor):
        raise TypeError(f"{source}: expected a tensor [K, C], got {type(token).__name__}")
    if token.ndim == 3 and token.shape[0] == 1:
        token = token[0]
    if token.ndim != 2 or token.shape[0] < 1:
        raise ValueError(
            f"{source}: a knowledge token must have shape [K, C] (K >= 1), got {tuple(token.shape)}"
        )
    if token.shape[1] != embed_dim:
        raise ValueError(
            f"{source}: knowledge token width {token.shape[1]} does not match the backbone width {embed_dim}; "
            "learn the token on a teacher of the same width or project it (distill.projection=orthogonal)"
        )
    return token.unsqueeze(0)


def attach_knowledge_tokens(
    model: nn.Module, num_tokens: int = 1, token: Tensor | None = None, trainable: bool = True
) -> KnowledgeTokenBackbone:
    """Replace ``model.backbone`` (a PoseModel's) by a :class:`KnowledgeTokenBackbone` sharing its weights;
    returns the new backbone. Parameter names stay ``backbone.*`` plus ``backbone.knowledge_token``."""
    backbone = KnowledgeTokenBackbone(model.backbone, num_tokens=num_tokens, token=token, trainable=trainable)
    model.backbone = backbone
    return backbone


def project_token(token: Tensor, out_dim: int, method: str = "none", seed: int = 0) -> Tensor:
    """Map a token ``[K, C_t]`` to width ``out_dim``.

    ``none``: widths must already match (error otherwise). ``orthogonal``: ``token @ Q.T`` with a fixed
    semi-orthogonal ``Q [out_dim, C_t]`` drawn from ``seed`` (orthonormal rows or columns, whichever is
    shorter), so inner products between token rows are preserved when ``out_dim >= C_t``. Q is never trained.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"distill.projection={method!r} is unknown; choose one of {list(PROJECTIONS)}")
    if token.ndim != 2:
        raise ValueError(f"expected a token [K, C], got shape {tuple(token.shape)}")
    c_in = int(token.shape[1])
    if c_in == out_dim:
        return token
    if method == "none":
        raise ValueError(
            f"knowledge token width {c_in} does not match the student width {out_dim}; set "
            "distill.projection=orthogonal (fixed linear map) or learn the token on a teacher of width "
            f"{out_dim}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randn(max(out_dim, c_in), min(out_dim, c_in), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)  # q: orthonormal columns
    q = q * torch.sign(torch.diagonal(r))  # unique (sign-fixed) factor
    proj = q if out_dim >= c_in else q.T  # [out_dim, c_in]
    return (token.double() @ proj.T).to(token.dtype)


# ----------------------------------------------------------------------------------------------- token files


def save_knowledge_token(path: str | Path, token: Tensor, meta: dict[str, Any] | None = None) -> Path:
    """Write a token ``[K, C]`` (or ``[1, K, C]``): ``.safetensors`` (string metadata) or a ``torch.save`` dict
    ``{"knowledge_token": [K, C], "meta": {...}}`` of plain types (readable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = token.detach().cpu().float()
    t = t[0] if t.ndim == 3 and t.shape[0] == 1 else t
    if t.ndim != 2:
        raise ValueError(f"expected a token [K, C], got shape {tuple(t.shape)}")
    info = {"format_version": _FORMAT_VERSION, "num_tokens": int(t.shape[0]), "embed_dim": int(t.shape[1])}
    info.update({k: v for k, v in (meta or {}).items() if v is not None})
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({_TOKEN_KEY: t.contiguous()}, str(path), metadata={k: str(v) for k, v in info.items()})
    else:
        torch.save({_TOKEN_KEY: t.clone(), "meta": info}, path)
    return path


def load_knowledge_token(
    path: str | Path, field: str = "distill.token_path"
) -> tuple[Tensor, dict[str, Any]]:
    """Read a token file written by :func:`save_knowledge_token`: ``(token [K, C] float32, meta)``.

    ``field`` names the config option in error messages. Read with the safe checkpoint reader (never
    unpickles code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{field}={path}: no such knowledge-token file (stage 1 writes it: distill.out)"
        )
    from multipose.models.checkpoints.read import read_checkpoint

    obj = read_checkpoint(path, field=field)  # safe: never unpickles code; names the file on any failure
    if path.suffix == ".safetensors":
        keys, meta = list(obj["state_dict"]), dict(obj.get("metadata") or {})
        token = obj["state_dict"].get(_TOKEN_KEY)
    else:
        keys = list(obj)
        token = obj.get(_TOKEN_KEY)
        meta = dict(obj.get("meta") or {})
    if not isinstance(token, Tensor):
        raise ValueError(f"{field}={path}: no '{_TOKEN_KEY}' tensor in the file (found keys {keys[:10]})")
    if token.ndim != 2 or not math.prod(token.shape):
        raise ValueError(f"{field}={path}: '{_TOKEN_KEY}' must have shape [K, C], got {tuple(token.shape)}")
    return token.float(), meta
