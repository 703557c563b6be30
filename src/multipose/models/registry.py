"""Named ViTPose backbone sizes: the architecture only.

Dimensions from the official ViTPose configs and released checkpoints:

========== ===== ===== ===== ============== ============
name        C     depth heads part_features  params (M)
========== ===== ===== ===== ============== ============
vit_tiny    192   6     3     48             ~2.9
vit_small   384   12    12    96             ~22
vit_base    768   12    12    192            ~86
vit_large   1024  24    16    256            ~304
vit_huge    1280  32    16    320            ~632
========== ===== ===== ===== ============== ============

ViTPose-S has **12** heads (head dim 32), unlike timm's ViT-S (6). ``vit_tiny`` is not an official size: it is
the CPU default of this project (DeiT-Ti width, half the depth) for tests and the synthetic world.
``part_features`` is C/4 for every size (the ViTPose+-S config's 192 does not match the released S checkpoint,
which has 96). The training recipe of each size (drop path, layer decay for ViTPose and ViTPose++) lives in one
place, ``conf/backbone/vit_<size>.yaml``; the learning rate and its batch size in ``conf/optim/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from multipose.models.vit import ViTPoseBackbone

__all__ = ["BackboneSpec", "BACKBONES", "build_backbone", "get_backbone_spec", "list_backbones"]


@dataclass(frozen=True)
class BackboneSpec:
    """One named backbone size (architecture; recipe numbers are in ``conf/backbone/``)."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    part_features: int  # ViTPose++ PS-FFN task-specific width (C / 4)
    params_m: float | None = None  # reference backbone size in millions (None for non-official sizes)

    def kwargs(self) -> dict:
        """Constructor arguments of :class:`ViTPoseBackbone` for this size."""
        return dict(embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads)


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec("vit_tiny", 192, 6, 3, 48, None),
        BackboneSpec("vit_small", 384, 12, 12, 96, 22.0),
        BackboneSpec("vit_base", 768, 12, 12, 192, 86.0),
        BackboneSpec("vit_large", 1024, 24, 16, 256, 304.0),
        BackboneSpec("vit_huge", 1280, 32, 16, 320, 632.0),
    )
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, smallest first."""
    return list(BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}") from None


def build_backbone(name: str, **overrides) -> ViTPoseBackbone:
    """Build a named backbone; ``overrides`` replace/add :class:`ViTPoseBackbone` arguments
    (e.g. ``ffn='ps', num_experts=6, img_size=(256, 192), drop_path_rate=0.3``; drop path defaults to 0).

    For ``ffn='ps'`` the size's ``part_features`` (C/4) is used unless ``part_features`` or ``part_ratio`` is given.
    """
    spec = get_backbone_spec(name)
    kwargs = spec.kwargs()
    kwargs.update(overrides)
    return ViTPoseBackbone(**kwargs)
