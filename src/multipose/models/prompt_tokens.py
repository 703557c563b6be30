"""ExtPose-style pose prompts: 2D keypoints in any skeleton as a second input modality of the ViT.

A prompt is a set of keypoints in the **crop** (input pixels, the frame the image tokens live in). Each prompt
keypoint becomes one token (:class:`PromptEncoder`)::

    token = W_conf * confidence                       (confidence / visibility in [0, 1], one linear map)
          + backbone position embedding at (x, y)     (bilinear between token centres, ViTPoseBackbone.pos_embed_at)
          + E_tag[semantic tag]                       (shared vocabulary: the same tag in two skeletons is one row)
          + E_skeleton[skeleton of the prompt]

The tokens join the patch tokens in every block and are dropped before the final norm
(:class:`multipose.models.vit.ExtraTokens`); padded / masked keypoints are excluded exactly (boolean SDPA mask).
Because tags are shared, a prompt in skeleton A informs the heads of every other skeleton.

Image modality masking (``image_valid`` False for a sample) replaces the sample's patch embeddings by the learned
``image_mask_token`` (``image_mask='token'``, default) or by zeros (``image_mask='zero'``); the position embedding
is kept, so the pose-only path can still place heatmaps.

A prompt travels as a mapping of tensors (the batch dict keys of :data:`PROMPT_KEYS`)::

    prompt_keypoints  float32 [B, P, 3]   (x, y, confidence) in crop input pixels
    prompt_tags       int64   [B, P]      index into the model's tag list (PromptEncoder.tags)
    prompt_skeletons  int64   [B, P]      index into the model's skeleton list (PromptEncoder.skeletons)
    prompt_valid      bool    [B, P]      False: padding or masked out
    image_valid       bool    [B]         optional; False: image modality masked

The model description stores the encoder's settings as ``model_config["prompt"] = {tags, skeletons,
image_mask}`` (:func:`prompt_model_config`), so a checkpoint rebuilds its encoder without Hydra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multipose.models.vit import ExtraTokens

__all__ = [
    "IMAGE_MASK_MODES",
    "PROMPT_KEYS",
    "PromptEncoder",
    "attach_prompt_encoder",
    "flip_prompt",
    "prompt_from_batch",
    "prompt_model_config",
]

PROMPT_KEYS = ("prompt_keypoints", "prompt_tags", "prompt_skeletons", "prompt_valid")
IMAGE_MASK_MODES = ("token", "zero")


def prompt_model_config(skeletons: Sequence[str], image_mask: str = "token") -> dict[str, Any]:
    """``model_config["prompt"]`` for a model whose prompts may come in ``skeletons`` (the mix's skeletons plus
    any prompt-only ones): the current vocabulary's tags (their order fixes the embedding rows)."""
    from multipose.skeletons.registry import active_vocabulary, get_skeleton

    if image_mask not in IMAGE_MASK_MODES:
        raise ValueError(
            f"prompt_tokens.image_mask={image_mask!r} is unknown; one of {list(IMAGE_MASK_MODES)}"
        )
    names = list(dict.fromkeys(get_skeleton(s).name for s in skeletons))
    return {"tags": list(active_vocabulary().tags), "skeletons": names, "image_mask": image_mask}


def _mirror_index(tags: Sequence[str]) -> list[int]:
    """Index of each tag's mirror tag (itself when the mirror is not in ``tags``)."""
    from multipose.skeletons.registry import _default_mirror, active_vocabulary

    vocab = active_vocabulary()
    pos = {t: i for i, t in enumerate(tags)}
    return [pos.get(vocab.mirror_of(t) if t in vocab else _default_mirror(t), i) for i, t in enumerate(tags)]


class PromptEncoder(nn.Module):
    """Pose tokens from prompt keypoints (see the module docstring).

    Args:
        embed_dim: the backbone width C.
        tags: the semantic tag of each embedding row (the shared vocabulary).
        skeletons: the skeleton of each skeleton-embedding row.
        image_mask: ``token`` (learned ``image_mask_token``) or ``zero`` (zeros) for masked images.
    """

    def __init__(
        self, embed_dim: int, tags: Sequence[str], skeletons: Sequence[str], image_mask: str = "token"
    ) -> None:
        super().__init__()
        if image_mask not in IMAGE_MASK_MODES:
            raise ValueError(
                f"model_config.prompt.image_mask={image_mask!r} is unknown; one of {IMAGE_MASK_MODES}"
            )
        if not tags or not skeletons:
            raise ValueError("model_config.prompt needs non-empty 'tags' and 'skeletons' lists")
        self.tags, self.skeletons, self.image_mask = list(tags), list(skeletons), image_mask
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.skeleton_index = {s: i for i, s in enumerate(self.skeletons)}
        self.conf_embed = nn.Linear(1, embed_dim)
        self.tag_embed = nn.Embedding(len(self.tags), embed_dim)
        self.skeleton_embed = nn.Embedding(len(self.skeletons), embed_dim)
        self.image_mask_token = nn.Parameter(torch.zeros(embed_dim), requires_grad=image_mask == "token")
        self.register_buffer(
            "mirror", torch.tensor(_mirror_index(self.tags), dtype=torch.long), persistent=False
        )
        for emb in (self.tag_embed, self.skeleton_embed):
            nn.init.trunc_normal_(emb.weight, std=0.02)
        nn.init.trunc_normal_(self.conf_embed.weight, std=0.02)
        nn.init.zeros_(self.conf_embed.bias)
        if image_mask == "token":
            nn.init.trunc_normal_(self.image_mask_token, std=0.02)

    def config(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "skeletons": list(self.skeletons), "image_mask": self.image_mask}

    def skeleton_layout(self, skeleton: str) -> tuple[int, list[int]]:
        """(skeleton row, tag row of each of its keypoints) for prompts in ``skeleton``; clear error when the
        model was not trained for it or a tag is unknown."""
        from multipose.skeletons.registry import get_skeleton

        sk = get_skeleton(skeleton)
        if sk.name not in self.skeleton_index:
            raise ValueError(
                f"prompt skeleton {sk.name!r}: this model's prompt tokens know the skeletons {self.skeletons}; "
                "give the prompt in one of them"
            )
        missing = [t for t in sk.semantic if t not in self.tag_index]
        if missing:
            raise ValueError(f"prompt skeleton {sk.name!r}: tags {missing} are not in the model's vocabulary")
        return self.skeleton_index[sk.name], [self.tag_index[t] for t in sk.semantic]

    def forward(
        self, prompt: Mapping[str, Tensor], backbone: nn.Module, input_hw: Sequence[int]
    ) -> ExtraTokens:
        """The :class:`ExtraTokens` of a prompt (mapping with :data:`PROMPT_KEYS`, optional ``image_valid``)."""
        missing = [k for k in PROMPT_KEYS if k not in prompt]
        if missing:
            raise ValueError(f"prompt is missing {missing}; a prompt needs {list(PROMPT_KEYS)}")
        kp = prompt["prompt_keypoints"].float()
        if kp.ndim != 3 or kp.shape[-1] != 3:
            raise ValueError(f"prompt_keypoints must be [B, P, 3] (x, y, confidence), got {tuple(kp.shape)}")
        tags, skels = prompt["prompt_tags"].long(), prompt["prompt_skeletons"].long()
        valid = prompt["prompt_valid"].bool()
        for key, t in (("prompt_tags", tags), ("prompt_skeletons", skels), ("prompt_valid", valid)):
            if t.shape != kp.shape[:2]:
                raise ValueError(f"{key} must be [B, P] = {tuple(kp.shape[:2])}, got {tuple(t.shape)}")
        tags = torch.where(valid, tags, torch.zeros_like(tags))  # padding rows may hold anything
        skels = torch.where(valid, skels, torch.zeros_like(skels))
        if bool((tags >= len(self.tags)).any() | (tags < 0).any()):
            raise ValueError(
                f"prompt_tags outside [0, {len(self.tags)}): the model knows {len(self.tags)} tags"
            )
        if bool((skels >= len(self.skeletons)).any() | (skels < 0).any()):
            raise ValueError(
                f"prompt_skeletons outside [0, {len(self.skeletons)}): skeletons {self.skeletons}"
            )
        conf = kp[..., 2:3].clamp(0.0, 1.0)
        tokens = (
            self.conf_embed(conf)
            + backbone.pos_embed_at(kp[..., :2], input_hw)
            + self.tag_embed(tags)
            + self.skeleton_embed(skels)
        )
        keep = prompt.get("image_valid")
        token = self.image_mask_token if self.image_mask == "token" else self.image_mask_token.detach() * 0
        return ExtraTokens(
            tokens, valid, None if keep is None else keep.bool(), None if keep is None else token
        )


def prompt_from_batch(batch: Mapping[str, Any]) -> dict[str, Tensor] | None:
    """The prompt part of a batch dict (:data:`PROMPT_KEYS` and ``image_valid`` when present), or None when the
    batch carries no prompt."""
    if "prompt_keypoints" not in batch:
        return None
    keys = (*PROMPT_KEYS, "image_valid")
    return {k: batch[k] for k in keys if k in batch}


def flip_prompt(prompt: Mapping[str, Tensor], width: int, mirror: Tensor) -> dict[str, Tensor]:
    """The prompt of the horizontally flipped crop (flip test): ``x -> width - 1 - x`` and every tag replaced by
    its mirror tag (``mirror`` = :attr:`PromptEncoder.mirror`)."""
    out = dict(prompt)
    kp = prompt["prompt_keypoints"].clone()
    kp[..., 0] = width - 1 - kp[..., 0]
    out["prompt_keypoints"] = kp
    tags = prompt["prompt_tags"].long()
    out["prompt_tags"] = mirror.to(tags.device)[tags.clamp(0, mirror.numel() - 1)]
    return out


def attach_prompt_encoder(model: nn.Module, settings: Mapping[str, Any]) -> PromptEncoder:
    """Give a :class:`~multipose.models.pose_model.PoseModel` its prompt encoder (``model.prompt``) from
    ``model_config["prompt"]``."""
    settings = dict(settings)
    unknown = sorted(set(settings) - {"tags", "skeletons", "image_mask"})
    if unknown:
        raise ValueError(
            f"model_config.prompt has unknown keys {unknown}; known: tags, skeletons, image_mask"
        )
    encoder = PromptEncoder(
        int(model.backbone.embed_dim),
        settings.get("tags") or [],
        settings.get("skeletons") or [],
        str(settings.get("image_mask", "token")),
    ).to(model.backbone.pos_embed.device)
    model.prompt = encoder
    return encoder
