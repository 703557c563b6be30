"""Validation of a pose-prompted model: prompted scores next to the image-only ones (``+prompt=extpose``).

The prompt tokens themselves are part of the network (``model.prompt``, :mod:`multipose.models.prompt_tokens`) and
train through the ordinary heatmap loss on prompted batches (``data.prompt``); this bridge adds no loss. It scores
alternate predictions of every validation batch (its ``prompt_*`` tensors, built by :mod:`multipose.data.prompts`
from ``data.prompt.val_source``, corrupted, never masked), each as ``val/<ds>/<variant>/<metric>`` and, for the
other heads, ``val/<ds>/cross/<head>/<variant>/<metric>``:

* ``prompt``: image + prompt, every head the validation runs (a prompt in skeleton A read out by head B);
* ``prompt_pose_only``: the prompt alone (image modality masked);
* ``prompt_input``: the prompt itself, as a prediction of the dataset's own skeleton (only when the prompt is
  in that skeleton): the accuracy the image has to improve on.

Settings (``bridge.prompt``): ``variants`` (a subset of the three, default all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from multipose.bridges.base import Bridge
from multipose.models.prompt_tokens import prompt_from_batch

if TYPE_CHECKING:  # pragma: no cover
    from multipose.lit_module import PoseLitModule

__all__ = ["PROMPT_VARIANTS", "PromptBridge"]

PROMPT_VARIANTS = ("prompt", "prompt_pose_only", "prompt_input")


class PromptBridge(Bridge):
    name = "prompt"
    variants = PROMPT_VARIANTS

    def __init__(
        self,
        settings: Mapping[str, Any],
        loss: Mapping[str, Any],
        model_config: Mapping[str, Any],
        mix: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(settings, loss, model_config, mix)
        unknown = sorted(set(self.settings) - {"variants", "enabled"})
        if unknown:
            raise ValueError(f"bridge.prompt has unknown keys {unknown}; known: variants")
        if self.loss_weights:
            raise ValueError(
                f"loss.prompt has weights {sorted(self.loss_weights)}, but the prompt bridge has no loss"
            )
        chosen = tuple(self.settings.get("variants") or PROMPT_VARIANTS)
        bad = [v for v in chosen if v not in PROMPT_VARIANTS]
        if bad:
            raise ValueError(f"bridge.prompt.variants: unknown {bad}; choose from {list(PROMPT_VARIANTS)}")
        self.variants = chosen  # type: ignore[misc]
        if not model_config.get("prompt"):
            raise ValueError(
                "bridge.prompt scores prompted predictions, but the model has no prompt tokens: set data.prompt "
                "(+prompt=extpose sets both)"
            )

    def validation_variants(
        self, lit: PoseLitModule, batch: Mapping[str, Any], dataset: str, predictions: Mapping[str, Any]
    ) -> dict[str, dict[str, np.ndarray]]:
        prompt = prompt_from_batch(batch)
        if prompt is None:
            raise ValueError(
                f"bridge.prompt: the validation batches of {dataset!r} carry no prompt; set data.prompt "
                "(+prompt=extpose)"
            )
        predictor = lit.predictor
        use_udp = predictor.mix.dataset(dataset).use_udp
        heads = list(predictions)
        out: dict[str, dict[str, np.ndarray]] = {}
        images, center, scale = batch["image"], batch["center"], batch["scale"]
        for variant, keep in (("prompt", True), ("prompt_pose_only", False)):
            if variant in self.variants:
                p = dict(prompt)
                p["image_valid"] = torch.full(
                    (images.shape[0],), keep, dtype=torch.bool, device=images.device
                )
                preds = predictor.predict(images, center, scale, heads, use_udp, prompt=p)
                out[variant] = {h: pred.keypoints for h, pred in preds.items()}
        if "prompt_input" in self.variants:
            out["prompt_input"] = {dataset: self.prompt_as_prediction(lit, prompt, batch, dataset, use_udp)}
        return out

    @staticmethod
    def prompt_as_prediction(
        lit: PoseLitModule,
        prompt: Mapping[str, torch.Tensor],
        batch: Mapping[str, Any],
        dataset: str,
        use_udp: bool,
    ) -> np.ndarray:
        """The prompt as image-pixel keypoints ``[B, K, 3]`` of ``dataset``'s skeleton (score 1 on valid joints,
        0 elsewhere); samples whose prompt is in another skeleton get all-zero scores."""
        from multipose.data.geometry import crop_to_image

        spec = lit.predictor.mix
        skeleton = spec.skeletons[dataset]
        encoder = lit.model.prompt
        row, tags = encoder.skeleton_layout(skeleton.name)
        k = skeleton.num_keypoints
        cpu = {key: value.detach().cpu() for key, value in prompt.items()}
        kp = cpu["prompt_keypoints"][:, :k].double().numpy()
        same = (cpu["prompt_skeletons"][:, :k] == row) & (cpu["prompt_tags"][:, :k] == torch.tensor(tags))
        score = (cpu["prompt_valid"][:, :k] & same).numpy()
        center, scale = (np.asarray(batch[key].detach().cpu()) for key in ("center", "scale"))
        img = crop_to_image(kp[..., :2], center, scale, tuple(spec.input_size), use_udp=use_udp)
        return np.concatenate([img, score[..., None].astype(np.float64)], axis=-1).astype(np.float32)
