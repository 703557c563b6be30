"""Pose-prompt tokens in the backbone: exact masking, order invariance, gradients, SDPA vs explicit attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from multipose.models.build import model_from_config
from multipose.models.knowledge_token import attach_knowledge_tokens
from multipose.models.prompt_tokens import flip_prompt, prompt_model_config
from multipose.models.vit import ExtraTokens

H, W = 64, 48


def _model(ffn: str = "shared", image_mask: str = "token"):
    cfg = {
        "backbone": {
            "name": "vit_tiny",
            "ffn": ffn,
            "img_size": [H, W],
            "overrides": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        },
        "head": {"type": "classic", "deconv_filters": [16, 16]},
        "heads": {
            "a": {"skeleton": "coco", "num_keypoints": 17},
            "b": {"skeleton": "mpii", "num_keypoints": 16},
        },
        "prompt": prompt_model_config(["coco", "mpii"], image_mask=image_mask),
    }
    torch.manual_seed(0)
    return model_from_config(cfg).eval()


def _prompt(model, b: int = 3, skeleton: str = "coco", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    row, tags = model.prompt.skeleton_layout(skeleton)
    p = len(tags)
    kp = torch.rand(b, p, 3, generator=g) * torch.tensor([W, H, 1.0])
    return {
        "prompt_keypoints": kp,
        "prompt_tags": torch.tensor(tags).expand(b, -1).clone(),
        "prompt_skeletons": torch.full((b, p), row),
        "prompt_valid": torch.rand(b, p, generator=g) > 0.3,
    }


def test_fully_masked_prompt_gives_the_no_prompt_output_per_sample():
    model = _model("ps")
    images = torch.randn(3, 3, H, W)
    didx = torch.tensor([1, 0, 1])
    prompt = _prompt(model)
    prompt["prompt_valid"][1] = False  # sample 1 has no prompt; the others do
    with torch.no_grad():
        plain = model(images, didx)
        prompted = model(images, didx, prompt=prompt)
        prompt["prompt_valid"][:] = False
        none = model(images, didx, prompt=prompt)
    assert (plain[1] - prompted[1]).abs().max() <= 1e-6
    assert (plain[0] - prompted[0]).abs().max() > 1e-4  # the prompt does reach the other samples
    assert torch.equal(plain, none)


def test_token_order_does_not_change_the_output():
    model = _model()
    images = torch.randn(3, 3, H, W)
    prompt = _prompt(model)
    perm = torch.randperm(prompt["prompt_valid"].shape[1], generator=torch.Generator().manual_seed(3))
    shuffled = {k: v[:, perm] for k, v in prompt.items()}
    with torch.no_grad():
        a = model(images, None, prompt=prompt)
        b = model(images, None, prompt=shuffled)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_masked_tokens_get_zero_gradient():
    model = _model().train()
    images = torch.randn(2, 3, H, W)
    prompt = _prompt(model, b=2)
    kp = prompt["prompt_keypoints"].clone().requires_grad_(True)
    prompt["prompt_keypoints"] = kp
    model.heads["a"](model(images, None, prompt=prompt)).square().sum().backward()
    valid = prompt["prompt_valid"]
    assert kp.grad[~valid].abs().max() == 0
    assert kp.grad[valid].abs().max() > 0


def test_sdpa_with_mask_equals_explicit_attention():
    model = _model()
    images = torch.randn(2, 3, H, W)
    prompt = _prompt(model, b=2)
    with torch.no_grad():
        fused = model(images, None, prompt=prompt)
        for blk in model.backbone.blocks:
            blk.attn.fused_attn = False  # timm's explicit softmax(q k^T) v with the boolean mask as -inf bias
        explicit = model(images, None, prompt=prompt)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    # and the mask semantics against a hand-written attention
    q, k, v = torch.randn(3, 2, 2, 7, 8).unbind(0)
    keep = torch.rand(2, 7) > 0.4
    keep[:, 0] = True
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    ref = scores.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_image_masking_and_knowledge_tokens_keep_working():
    model = _model()
    attach_knowledge_tokens(model, num_tokens=2)
    images = torch.randn(2, 3, H, W)
    prompt = _prompt(model, b=2)
    with torch.no_grad():
        a = model(images, None, prompt=prompt)
        prompt["image_valid"] = torch.tensor([True, False])
        b = model(images, None, prompt=prompt)
        other = model(torch.randn(2, 3, H, W), None, prompt=prompt)
    torch.testing.assert_close(a[0], b[0])
    assert (a[1] - b[1]).abs().max() > 1e-4
    torch.testing.assert_close(b[1], other[1])  # a masked image does not reach the features


def test_compact_trims_padding_exactly():
    tokens = torch.randn(2, 5, 4)
    valid = torch.tensor([[False, True, False, True, False], [False, False, True, False, False]])
    c = ExtraTokens(tokens, valid).compact()
    assert c.tokens.shape == (2, 2, 4)
    torch.testing.assert_close(c.tokens[0], tokens[0, [1, 3]])
    assert c.valid.tolist() == [[True, True], [True, False]]


def test_flip_prompt_mirrors_tags_and_x():
    model = _model()
    prompt = _prompt(model, b=1)
    flipped = flip_prompt(prompt, W, model.prompt.mirror)
    tags = model.prompt.tags
    names = [tags[i] for i in flipped["prompt_tags"][0].tolist()]
    assert names[1] == "right_eye" and names[2] == "left_eye" and names[0] == "nose"
    torch.testing.assert_close(
        flipped["prompt_keypoints"][..., 0], W - 1 - prompt["prompt_keypoints"][..., 0]
    )


def test_model_without_prompt_tokens_refuses_a_prompt():
    model = _model()
    model.prompt = None
    with pytest.raises(ValueError, match="no prompt tokens"):
        model(torch.randn(1, 3, H, W), None, prompt=_prompt(_model(), b=1))


def test_pos_embed_at_token_centres_equals_the_grid():
    bb = _model().backbone
    h, w = bb.grid_size
    pts = torch.tensor([[[j * 16 + 5.5, i * 16 + 5.5] for i in range(h) for j in range(w)]])
    torch.testing.assert_close(bb.pos_embed_at(pts, (H, W)), bb.grid_pos_embed((h, w)), atol=1e-6, rtol=1e-5)
