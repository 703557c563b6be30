"""ViTPose / ViTPose++ backbone on timm transformer blocks, with the official parameter names.

Layout (official ``mmpose/models/backbones/vit.py`` ``ViT`` and ``vit_moe.py`` ``ViTMoE``):

- ``patch_embed.proj``: Conv2d(3, C, kernel 16, stride ``16 // ratio``, padding ``4 + 2 * (ratio // 2 - 1)``),
  i.e. stride 16 / padding 2 for ``ratio=1``: a 256x192 input gives a 16x12 token grid (the grid is shifted by
  2 px; this padding is what the released checkpoints expect).
- ``pos_embed``: (1, 1 + h*w, C). There is no cls token in the sequence: row 0 (the cls slot) is **added to every
  patch token**, ``x = patch + pos[:, 1:] + pos[:, :1]``.
- ``blocks.i``: timm ``Block`` (pre-norm, LayerNorm eps 1e-6, ``qkv_bias=True``, GELU MLP of ratio 4, drop path
  ``linspace(0, drop_path_rate, depth)[i]`` on both residual branches), attention through PyTorch
  ``scaled_dot_product_attention`` (``attn.fused_attn`` is forced on). The FFN is ``blocks.i.mlp`` with the
  variant chosen by ``ffn`` (see :mod:`multipose.models.moe`).
- ``last_norm``: LayerNorm eps 1e-6. Output: feature map ``[B, C, h, w]`` (``h = H // stride`` for the usual
  sizes; see :func:`token_grid`).

Extra tokens (:class:`ExtraTokens`, e.g. ExtPose-style pose prompts built by
:mod:`multipose.models.prompt_tokens`): appended after the patch tokens (and after any fixed tokens such as
knowledge tokens, :meth:`ViTPoseBackbone.fixed_tokens`), attended to by every block and dropped before
``last_norm``. Tokens marked invalid are excluded exactly: they are never attention keys (boolean SDPA mask), so
the patch tokens' outputs and every gradient are as if they were absent. ``image_keep`` replaces the patch
embeddings of a sample by a given token (image modality masking; the position embedding is kept).

Unlike the official code, the position embedding is resized (bicubic, cls slot kept) at runtime when the token
grid differs from the grid it was built for, and :func:`resize_pos_embed` does the same at load time.
Official checkpoints load 1:1 after stripping ``backbone.`` and dropping the unused ``cls_token``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from multipose.models.moe import FFN_TYPES, TaskRouting, build_ffn, merge_ffn, resolve_part_features

__all__ = ["ExtraTokens", "ViTPoseBackbone", "ViTPoseBlock", "PatchEmbed", "resize_pos_embed", "token_grid"]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"expected an (H, W) pair, got {v}")
    return v  # type: ignore[return-value]


def patch_geometry(patch_size: int, ratio: int) -> tuple[int, int]:
    """(stride, padding) of the official patch embedding for ``ratio`` (1 -> (16, 2) for patch 16)."""
    if ratio < 1 or patch_size % ratio:
        raise ValueError(f"ratio must be a positive divisor of patch_size={patch_size}, got {ratio}")
    return patch_size // ratio, 4 + 2 * (ratio // 2 - 1)


def token_grid(img_size: Sequence[int], patch_size: int = 16, ratio: int = 1) -> tuple[int, int]:
    """Token grid (h, w) for an input (H, W): ``floor((H + 2*pad - patch) / stride) + 1`` per side
    (256x192 -> 16x12 for ratio 1; 32x24 for ratio 2)."""
    stride, pad = patch_geometry(patch_size, ratio)
    h, w = _pair(img_size)
    return (h + 2 * pad - patch_size) // stride + 1, (w + 2 * pad - patch_size) // stride + 1


def resize_pos_embed(
    pos_embed: Tensor, old_hw: Sequence[int], new_hw: Sequence[int], num_extra_tokens: int = 1
) -> Tensor:
    """Resize a position embedding (1, extra + h*w, C) from grid ``old_hw`` to ``new_hw`` (both (h, w)).

    The first ``num_extra_tokens`` rows (the cls slot) are kept as they are; the grid part is resized with
    bicubic interpolation, ``align_corners=False`` (the official ``load_checkpoint`` / ``get_abs_pos`` rule).
    """
    old_hw, new_hw = _pair(old_hw), _pair(new_hw)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must have shape (1, N, C), got {tuple(pos_embed.shape)}")
    expected = num_extra_tokens + old_hw[0] * old_hw[1]
    if pos_embed.shape[1] != expected:
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} rows but grid {old_hw} with {num_extra_tokens} extra token(s) "
            f"needs {expected}"
        )
    if old_hw == new_hw:
        return pos_embed
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    c = pos_embed.shape[-1]
    grid = grid.reshape(1, old_hw[0], old_hw[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_hw, mode="bicubic", align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], c)
    return torch.cat([extra, grid], dim=1)


@dataclass
class ExtraTokens:
    """Tokens appended to the patch tokens of a batch (see the module docstring).

    ``tokens [B, P, C]``; ``valid [B, P]`` bool (False: excluded from attention exactly); ``image_keep [B]`` bool
    or None (False: that sample's patch embeddings are replaced by ``image_token [C]``).
    """

    tokens: Tensor
    valid: Tensor
    image_keep: Tensor | None = None
    image_token: Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3 or self.valid.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"ExtraTokens: tokens must be [B, P, C] and valid [B, P], got {tuple(self.tokens.shape)} and "
                f"{tuple(self.valid.shape)}"
            )
        if self.image_keep is not None and self.image_token is None:
            raise ValueError("ExtraTokens: image_keep needs the image_token that replaces masked images")

    def compact(self) -> ExtraTokens:
        """The same tokens with the padding trimmed: valid tokens first, ``P`` cut to the largest number of valid
        tokens of a sample (0 when none is valid). Exact: invalid tokens never influence the output."""
        counts = self.valid.sum(1)
        p = int(counts.max()) if counts.numel() else 0
        if p == self.valid.shape[1]:
            return self
        order = torch.argsort((~self.valid).to(torch.int8), dim=1, stable=True)[:, :p]
        tokens = self.tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, self.tokens.shape[-1]))
        return ExtraTokens(tokens, self.valid.gather(1, order), self.image_keep, self.image_token)


class PatchEmbed(nn.Module):
    """Official ViTPose patch embedding: ``proj`` = Conv2d(k=patch, stride=patch//ratio, padding 4+2(ratio//2-1))."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16, ratio: int = 1) -> None:
        super().__init__()
        stride, pad = patch_geometry(patch_size, ratio)
        self.patch_size, self.ratio, self.stride = patch_size, ratio, stride
        # token (i, j) covers input pixels [j*stride - pad, j*stride - pad + patch): its centre, in pixels, is
        # j*stride + centre_offset
        self.centre_offset = (patch_size - 1) / 2.0 - pad
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride, padding=pad)

    def grid(self, img_size: Sequence[int]) -> tuple[int, int]:
        return token_grid(img_size, self.patch_size, self.ratio)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class ConvStem(nn.Module):
    """Convolutional stem (Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021): a stack of
    3x3 stride-2 convolutions with BatchNorm + ReLU, channels doubling up to ``embed_dim``, then a 1x1 projection to
    ``embed_dim``. ``log2(patch_size)`` stride-2 layers give the same token stride as the patch embedding.

    A documented departure from plain ViTPose, meant for ViTs trained from scratch on little data (the CPU default
    run); the ViTPose / ViTPose++ recipes keep ``stem: patch`` so that official and MAE weights load. Token (i, j)
    is centred on input pixel (j*stride, i*stride) (every 3x3/stride-2/pad-1 layer centres output k on input 2k),
    and the grid is ``ceil(H / stride) x ceil(W / stride)``.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16) -> None:
        super().__init__()
        layers = patch_size.bit_length() - 1
        if patch_size < 2 or 2**layers != patch_size:
            raise ValueError(f"stem='conv' needs a power-of-two patch_size, got {patch_size}")
        widths = [max(embed_dim >> (layers - 1 - i), 8) for i in range(layers)]  # ..., C/4, C/2, C
        convs: list[nn.Module] = []
        c_in = in_chans
        for c_out in widths:
            convs += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.convs = nn.Sequential(*convs)
        self.proj = nn.Conv2d(c_in, embed_dim, kernel_size=1)
        self.patch_size, self.ratio, self.stride = patch_size, 1, patch_size
        self.centre_offset = 0.0

    def grid(self, img_size: Sequence[int]) -> tuple[int, int]:
        h, w = _pair(img_size)
        return -(-h // self.stride), -(-w // self.stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.convs(x))


STEMS = ("patch", "conv")


class ViTPoseBlock(Block):
    """timm ``Block`` whose FFN may be task-routed: ``forward(x, routing)``.

    Parameter names are timm's (= official): ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.*``.
    """

    def forward(  # type: ignore[override]
        self, x: Tensor, routing: TaskRouting | None = None, attn_mask: Tensor | None = None
    ) -> Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        h = self.norm2(x)
        h = self.mlp(h, routing) if getattr(self.mlp, "routed", False) else self.mlp(h)
        return x + self.drop_path2(self.ls2(h))


def _ffn_layer(ffn: str, num_experts: int, part_features: int | None, ddp_safe: bool):
    """A timm ``mlp_layer`` factory for :class:`Block` building the requested FFN variant."""

    def make(
        in_features,
        hidden_features=None,
        act_layer=nn.GELU,
        norm_layer=None,
        bias=True,
        drop=0.0,
        device=None,
        dtype=None,
        **_,
    ):
        if norm_layer is not None or bias is not True or drop:
            raise ValueError("the ViTPose FFN uses no MLP norm, biases on, and no dropout")
        return build_ffn(
            ffn,
            in_features,
            hidden_features,
            num_experts=num_experts,
            part_features=part_features,
            ddp_safe=ddp_safe,
            act_layer=act_layer,
            device=device,
            dtype=dtype,
        )

    return make


class ViTPoseBackbone(nn.Module):
    """Plain ViT backbone of ViTPose (``ffn='shared'``) and ViTPose++ (``ffn='ps'`` etc.).

    Args:
        img_size: input (H, W) the position embedding is built for (other sizes are resized on the fly).
        patch_size, ratio: patch embedding (see module docstring); ``stride = patch_size // ratio``.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer size (``mlp_ratio`` 4 in ViTPose).
        drop_path_rate: maximum stochastic-depth rate; block i uses ``linspace(0, rate, depth)[i]``.
        ffn: ``shared`` | ``ps`` | ``independent`` | ``shared_independent`` (see :mod:`multipose.models.moe`).
        num_experts: number of tasks (datasets of the mix) for the routed FFNs.
        part_features / part_ratio: PS-FFN task-specific width p, or alpha = p / C (default C / 4).
        ddp_safe: give absent tasks' experts zero gradients instead of none (see :mod:`multipose.models.moe`).
        grad_checkpointing: recompute each block in the backward pass (saves activation memory).
        fused_attn: use PyTorch SDPA in attention (on by default; off only for debugging).

    ``forward(x [B,3,H,W], dataset_idx [B] | None, extra: ExtraTokens | None) -> [B, C, h, w]``. ``dataset_idx``
    is needed for the routed FFNs with more than one expert and ignored by ``ffn='shared'``; ``extra`` appends
    tokens (pose prompts) that the blocks attend to and that are dropped before ``last_norm``.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = (256, 192),
        patch_size: int = 16,
        ratio: int = 1,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        ffn: str = "shared",
        num_experts: int = 1,
        part_features: int | None = None,
        part_ratio: float | None = None,
        ddp_safe: bool = True,
        grad_checkpointing: bool = False,
        fused_attn: bool = True,
        stem: str = "patch",
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if stem == "conv" and ratio != 1:
            raise ValueError(
                f"stem='conv' has stride patch_size; it does not take ratio={ratio} (use ratio=1)"
            )
        if ffn not in FFN_TYPES:
            raise ValueError(f"unknown ffn {ffn!r}; choose one of {', '.join(FFN_TYPES)}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if ffn == "ps":
            part_features = resolve_part_features(embed_dim, part_features, part_ratio)
        elif part_features is not None or part_ratio is not None:
            raise ValueError(f"part_features / part_ratio only apply to ffn='ps', not ffn={ffn!r}")
        img_size = _pair(img_size)
        self.config = dict(
            img_size=img_size,
            patch_size=patch_size,
            ratio=ratio,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            ffn=ffn,
            num_experts=num_experts,
            part_features=part_features,
            ddp_safe=ddp_safe,
            grad_checkpointing=grad_checkpointing,
            fused_attn=fused_attn,
        )
        if stem != "patch":  # the official layout's config stays as it was
            self.config["stem"] = stem
        self.img_size, self.embed_dim, self.depth, self.num_heads = img_size, embed_dim, depth, num_heads
        self.ffn, self.num_experts, self.part_features = ffn, num_experts, part_features
        self.grad_checkpointing = grad_checkpointing

        if stem == "conv":
            self.patch_embed: nn.Module = ConvStem(in_chans, embed_dim, patch_size)
        else:
            self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, ratio)
        self.stride = self.patch_embed.stride
        self.grid_size = self.patch_embed.grid(img_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], embed_dim))
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # timm / official rule
        mlp_layer = _ffn_layer(ffn, num_experts, part_features, ddp_safe)
        self.blocks = nn.ModuleList(
            ViTPoseBlock(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=dpr[i],
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                mlp_layer=mlp_layer,
            )
            for i in range(depth)
        )
        for blk in self.blocks:
            blk.attn.fused_attn = fused_attn
        self.last_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.init_weights()

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """Official from-scratch init: trunc_normal(0.02) Linear weights / zero biases, LN 1/0,
        trunc_normal(0.02) ``pos_embed``; patch conv keeps PyTorch's default. IS-FFN task branches start at 0."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            if hasattr(blk.mlp, "zero_init_experts"):
                blk.mlp.zero_init_experts()

    # --------------------------------------------------------------- forward
    @property
    def routed(self) -> bool:
        """True when the FFN is task-specific (needs ``dataset_idx`` once ``num_experts > 1``)."""
        return self.ffn != "shared"

    def routing(self, dataset_idx: Tensor | None, batch_size: int) -> TaskRouting | None:
        """The task routing for a batch (``None`` for the shared FFN)."""
        if not self.routed:
            return None
        if dataset_idx is None:
            if self.num_experts != 1:
                raise ValueError(
                    f"this backbone has ffn={self.ffn!r} with {self.num_experts} task experts, so forward() needs "
                    "dataset_idx [B] (each sample's dataset index in mix order); for single-task inference use "
                    "merge_experts(task)"
                )
            return TaskRouting((batch_size,))
        return TaskRouting.from_dataset_idx(
            dataset_idx.to(self.pos_embed.device), self.num_experts, batch_size
        )

    def tokens(
        self, x: Tensor, image_keep: Tensor | None = None, image_token: Tensor | None = None
    ) -> tuple[Tensor, tuple[int, int]]:
        """Patch tokens with position embedding: ``[B, h*w, C]`` and the grid (h, w). Samples with
        ``image_keep`` False get ``image_token`` in place of their patch embeddings (position embedding kept)."""
        x = self.patch_embed(x)
        hw = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if image_keep is not None:
            masked = image_token.reshape(1, 1, -1).to(x.dtype).expand_as(x)
            x = torch.where(image_keep.to(x.device).view(-1, 1, 1), x, masked)
        pos = self._pos_embed_for(hw)
        return x + pos[:, 1:] + pos[
            :, :1
        ], hw  # this order of additions, bit for bit as before prompts existed

    def _pos_embed_for(self, hw: tuple[int, int]) -> Tensor:
        pos = self.pos_embed
        if tuple(hw) != self.grid_size:
            pos = resize_pos_embed(pos, self.grid_size, hw)
        return pos

    def grid_pos_embed(self, hw: tuple[int, int]) -> Tensor:
        """The position embedding every patch token of grid ``hw`` gets: ``[1, h*w, C]`` (grid row + cls slot)."""
        pos = self._pos_embed_for(hw)
        return pos[:, 1:] + pos[:, :1]

    def pos_embed_at(self, points: Tensor, input_hw: Sequence[int]) -> Tensor:
        """The position embedding at arbitrary crop points, bilinearly interpolated between token centres.

        ``points [B, P, 2]`` are (x, y) in input pixels of an input of size ``input_hw`` (H, W); token ``(i, j)`` is
        centred at ``(j*stride + centre_offset, i*stride + centre_offset)`` (patch embedding: the centre of the
        pixels ``[j*stride - pad, j*stride - pad + patch)``; conv stem: ``j*stride``). Points outside the grid take the border value. Returns ``[B, P, C]``
        (with the cls slot added, as for the patch tokens)."""
        h, w = self.patch_embed.grid(input_hw)
        grid = self.grid_pos_embed((h, w))  # [1, h*w, C]
        c = grid.shape[-1]
        fmap = grid.reshape(1, h, w, c).permute(0, 3, 1, 2).expand(points.shape[0], -1, -1, -1)
        g = (points.to(fmap.dtype) - self.patch_embed.centre_offset) / self.stride  # grid units
        norm = torch.stack([g[..., 0] / max(w - 1, 1), g[..., 1] / max(h - 1, 1)], dim=-1) * 2.0 - 1.0
        out = F.grid_sample(
            fmap, norm.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True
        )
        return out[:, :, 0].transpose(1, 2)

    def fixed_tokens(self, batch_size: int, dtype: torch.dtype) -> Tensor | None:
        """Tokens every sample carries after its patch tokens (none here; knowledge tokens in a subclass)."""
        return None

    def forward(
        self, x: Tensor, dataset_idx: Tensor | None = None, extra: ExtraTokens | None = None
    ) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(x.shape)}")
        b = x.shape[0]
        routing = self.routing(dataset_idx, b)
        keep = None if extra is None else extra.image_keep
        x, (h, w) = self.tokens(x, keep, None if extra is None else extra.image_token)
        n = x.shape[1]
        parts = [x]
        fixed = self.fixed_tokens(b, x.dtype)
        if fixed is not None:
            parts.append(fixed)
        mask = None
        if extra is not None:
            extra = extra.compact()
            if extra.tokens.shape[1]:  # at least one valid token in the batch
                if extra.tokens.shape[0] != b:
                    raise ValueError(
                        f"extra tokens are for {extra.tokens.shape[0]} samples, the batch has {b}"
                    )
                before = sum(t.shape[1] for t in parts)
                parts.append(extra.tokens.to(x.dtype))
                valid = extra.valid.to(x.device)
                if not bool(
                    valid.all()
                ):  # key-padding mask; every row keeps the patch tokens, so no empty row
                    head = valid.new_ones(b, before)
                    mask = torch.cat([head, valid], dim=1)[:, None, None, :]
        if len(parts) > 1:
            x = torch.cat(parts, dim=1)
        full = routing
        if routing is not None:  # sort the batch by task once; every block then slices it contiguously
            x, routing = routing.sort(x), routing.sorted()
            mask = None if mask is None else full.sort(mask)
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, routing, mask, use_reentrant=False)
            else:
                x = blk(x, routing, mask)
        x = self.last_norm(x[:, :n])  # drop fixed and extra tokens
        if full is not None:
            x = full.unsort(x)
        return x.transpose(1, 2).reshape(b, self.embed_dim, h, w)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        self.config["grad_checkpointing"] = enable

    # ----------------------------------------------------------------- merge
    def merge_experts(self, task: int) -> ViTPoseBackbone:
        """A dense single-task copy (``ffn='shared'``) computing exactly task ``task``'s features.

        PS-FFN: ``fc2`` = shared rows + ``experts[task]`` rows (official ``tools/model_split.py``), so the result
        has the plain ViTPose layout and loads into any ViTPose code. I-FFN: that task's FFN. IS-FFN: one FFN of
        hidden width 2x (see :func:`multipose.models.moe.merge_ffn`), i.e. ``mlp_ratio`` doubles. For
        ``ffn='shared'`` this is a plain copy.
        """
        if not 0 <= int(task) < self.num_experts:
            raise ValueError(f"task {task} out of range: the backbone has {self.num_experts} task experts")
        cfg = dict(self.config, ffn="shared", num_experts=1, part_features=None)
        state = {k: v.detach().clone() for k, v in self.state_dict().items() if ".mlp." not in k}
        mlp_ratio = self.config["mlp_ratio"]
        for i, blk in enumerate(self.blocks):
            merged = merge_ffn(blk.mlp, int(task))
            mlp_ratio = merged.fc1.out_features / self.embed_dim
            state.update({f"blocks.{i}.mlp.{k}": v for k, v in merged.state_dict().items()})
        cfg["mlp_ratio"] = mlp_ratio
        with torch.device("meta"):
            dense = ViTPoseBackbone(**cfg)
        dense.load_state_dict(state, assign=True)
        return dense.train(self.training)
