"""The latent-point head of the ACAE variants ``latent`` and ``hybrid`` (reference notes §2.3-2.4; MeTRAbs
``--transform-coords`` and ``--predict-all-and-latents``).

One extra head per AE family predicts the AE's ``L`` latent points as heatmaps from the backbone features; its
soft-argmax points (crop-height units) decoded by the frozen AE (``decode``) give every union joint, hence every
skeleton of the family, consistent by construction.

* ``latent`` (direct latent prediction): the term ``latent_gt`` trains the decoded latents against each sample's
  own labelled joints; the per-dataset heads keep their heatmap loss but no consistency term.
* ``hybrid`` (student-teacher): ``output_reg``'s ``consistency`` and ``aegt`` on the heads, ``latent_gt``, and
  ``teacher = mean |Z - encode(stopgrad(P_all))|`` (the latents pulled towards the encoding of every head's
  joints; from step ``bridge.acae.teacher_start_step`` on, the reference's 5000 of 40000).

At validation the decoded latent head is scored as variant ``acae_latent`` (flip test with the latents' left/right
partners). The per-dataset heads are what ``predict`` serves; the latent head is read by validation only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["VARIANT_TERMS", "build_latent_head", "decoded_joints", "latent_heatmaps", "teacher_loss"]

#: the loss terms each variant trains (``loss.acae.<term>`` gives their weights)
VARIANT_TERMS: dict[str, tuple[str, ...]] = {
    "output_reg": ("consistency", "aegt"),
    "latent": ("latent_gt",),
    "hybrid": ("consistency", "aegt", "latent_gt", "teacher"),
}


def build_latent_head(model_config: Mapping[str, Any], n_latent: int) -> nn.Module:
    """A head of the model's head type (``model_config.head``) on the backbone's features with ``n_latent``
    heatmap channels."""
    from multipose.bridges.posebh.bridge import _backbone_geometry
    from multipose.models.heads import build_head
    from multipose.models.model_config import HeadArch

    raw = dict(model_config.get("head") or {"type": "classic"})
    filters, kernel = raw.get("deconv_filters"), raw.get("final_kernel")
    arch = HeadArch(
        type=str(raw.get("type", "classic")),
        deconv_filters=None if filters is None else tuple(int(f) for f in filters),
        final_kernel=None if kernel is None else int(kernel),
    )
    dim, upsample = _backbone_geometry(model_config)
    return build_head(arch.type, dim, int(n_latent), upsample=upsample, **arch.kwargs())


def latent_heatmaps(
    head: nn.Module, model: nn.Module, images: Tensor, didx: Tensor, flip: bool, codec: Any, partners: Any
) -> Tensor:
    """``[B, L, h, w]`` latent heatmaps of ``images`` (validation): with ``flip`` averaged with those of the
    mirrored crop, flipped back with ``codec`` and the latents' left/right ``partners``."""
    maps = head(model(images, didx))
    if flip:
        maps = 0.5 * (maps + codec.flip_back(head(model(images.flip(-1), didx)), list(partners)))
    return maps


def decoded_joints(latents: Tensor, ae: nn.Module) -> Tensor:
    """``[..., L, D]`` latent points -> ``[..., J, D]`` union joints through the frozen decoder (differentiable
    in the latents)."""
    dec = ae.decoder_weights().detach().to(latents)
    return torch.einsum("...ld,lj->...jd", latents, dec)


def teacher_loss(latents: Tensor, union: Tensor, ae: nn.Module) -> Tensor:
    """``mean |Z - encode(stopgrad(P_all))|`` (crop-height units): ``latents [B, L, 2]``, ``union [B, J, 2]``
    the heads' union pose."""
    enc = ae.encoder_weights().detach().to(latents)
    target = torch.einsum("bjd,jl->bld", union.detach().to(latents), enc)
    return (latents - target).abs().mean()
