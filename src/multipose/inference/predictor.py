"""The one top-down predictor: heads -> flip test -> decode with each head's codec -> crop to image pixels, and
the instance selection (re-scoring + OKS-NMS) of the COCO protocol.

Used by validation (:class:`multipose.lit_module.PoseLitModule`), by the tests and by ``python -m
multipose.predict``. One call returns, for a batch of crops, every requested head's flip-averaged heatmaps and
decoded image coordinates, which is what multi-branch voting (``evaluation.voting``) combines.

Pose prompts (:mod:`multipose.models.prompt_tokens`): :meth:`Predictor.heatmaps` / :meth:`Predictor.predict` take
an optional ``prompt`` (crop-pixel keypoints in any skeleton the model knows); every head then reads the prompted
features. With flip test the flipped crop gets the mirrored prompt (x mirrored, tags swapped left/right).

Skeletons added to an ACAE file (``python -m multipose.acae add-skeleton``; :mod:`multipose.bridges.acae_serve`) are
served like heads: ``Predictor(..., added={NAME: AddedSkeleton})`` accepts NAME in ``heads``; its keypoints come
from the (flip-tested) predictions of the AE's heads, with ``heatmaps=None``.

Each head runs on features computed with **its own** expert (for a routed / MoE backbone: the merged single-task
model of that dataset); with a shared FFN the backbone runs once per batch (twice with flip test) for all heads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multipose.inference.spec import MixSpec

__all__ = ["HeadPrediction", "Predictor"]


@dataclass
class HeadPrediction:
    """One head on one batch: ``heatmaps [B, K, h, w]`` (flip-averaged when flip test is on; None for an added
    skeleton, which has no heatmaps) and ``keypoints [B, K, 3]`` float32 ``(x, y, score)`` in image pixels."""

    heatmaps: Tensor | None
    keypoints: np.ndarray


class Predictor:
    """Args:
    model: a :class:`~multipose.models.pose_model.PoseModel` (put it in eval mode for inference), or None for a
        predictor that only decodes given heatmaps (:meth:`decode`).
    mix: the mix description (:class:`MixSpec` or its dict); gives each head's codec and skeleton.
    flip_test: average each head's heatmaps with those of the horizontally flipped crop (flipped back).
    projector: optional ACAE projection (:class:`multipose.bridges.acae.ACAEProjector`, e.g.
        :func:`~multipose.bridges.acae.projector_from_checkpoint`); ``predict(..., project=True)`` then returns
        every head's keypoints projected onto the AE's range (the heads sharing its AE run too).
    added: skeletons added to an ACAE file, ``{name: AddedSkeleton}``
        (:func:`multipose.bridges.acae_serve.load_added_skeletons`); each name is then served like a head.
    """

    def __init__(
        self,
        model: Any,
        mix: MixSpec | Mapping[str, Any],
        flip_test: bool = True,
        projector: Any = None,
        added: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.mix = MixSpec.from_dict(mix)
        self.flip_test = bool(flip_test)
        self.projector = projector
        self.added = dict(added or {})
        unknown = [] if model is None else [n for n in self.mix.names if n not in model.heads]
        if unknown:
            raise ValueError(
                f"the mix names datasets {unknown} that the model has no head for; heads: {list(model.heads)}"
            )
        clash = [n for n in self.added if n in self.mix.names]
        if clash:
            raise ValueError(
                f"added skeletons {clash} have the names of heads; rename them (add-skeleton NAME)"
            )
        for name, extra in self.added.items():
            lacking = [h for h in extra.heads if h not in self.mix.names]
            if lacking:
                raise ValueError(
                    f"added skeleton {name} reads heads {lacking} that the mix lacks (it has {self.mix.names})"
                )

    def skeleton(self, name: str) -> Any:
        """The skeleton of a head or an added skeleton."""
        return self.added[name].skeleton if name in self.added else self.mix.skeletons[name]

    @torch.no_grad()
    def heatmaps(
        self, images: Tensor, heads: Sequence[str], prompt: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """``{head: [B, K, h, w]}`` for every head in ``heads``, each with its own expert, flip-tested if on;
        ``prompt``: pose prompts of the crops (``prompt_*`` tensors), None for image-only prediction."""
        if self.model is None:
            raise RuntimeError("this Predictor was built without a model; it can only decode() heatmaps")
        kw: dict[str, Any] = {} if prompt is None else {"prompt": prompt}
        kw_flip = kw
        if prompt is not None and self.flip_test:
            from multipose.models.prompt_tokens import flip_prompt

            if getattr(self.model, "prompt", None) is None:
                raise ValueError(
                    "this model has no prompt tokens (model_config.prompt); predict without a prompt"
                )
            kw_flip = {"prompt": flip_prompt(prompt, images.shape[-1], self.model.prompt.mirror)}
        routed = getattr(self.model.backbone, "routed", False)
        cache: dict[int, tuple[Tensor, Tensor | None]] = {}
        out = {}
        for name in heads:
            index = self.model.head_index(name)
            key = index if routed else -1
            if key not in cache:
                didx = torch.full((images.shape[0],), index, dtype=torch.long, device=images.device)
                feats = self.model(images, didx, **kw)
                feats_flip = self.model(images.flip(-1), didx, **kw_flip) if self.flip_test else None
                cache[key] = (feats, feats_flip)
            feats, feats_flip = cache[key]
            head = self.model.heads[name]
            heatmaps = head(feats)
            if feats_flip is not None:
                flipped = self.mix.codecs[name].flip_back(
                    head(feats_flip), self.mix.skeletons[name].flip_indices
                )
                heatmaps = 0.5 * (heatmaps + flipped)
            out[name] = heatmaps
        return out

    def decode(self, heatmaps: Tensor, head: str, center: Any, scale: Any, use_udp: bool) -> np.ndarray:
        """``[B, K, 3]`` float32 ``(x, y, score)`` in image pixels: decoded with ``head``'s codec, mapped back
        with the crops' ``center`` / ``scale`` ``[B, 2]`` and affine kind (``use_udp``)."""
        from multipose.data.geometry import crop_to_image

        coords, scores = self.mix.codecs[head].decode(heatmaps.float().detach().cpu())
        img = crop_to_image(
            coords, _numpy(center), _numpy(scale), tuple(self.mix.input_size), use_udp=use_udp
        )
        return np.concatenate([img, scores[..., None]], axis=-1).astype(np.float32)

    def predict(
        self,
        images: Tensor,
        center: Any,
        scale: Any,
        heads: Sequence[str],
        use_udp: bool,
        project: bool = False,
        prompt: Mapping[str, Tensor] | None = None,
    ) -> dict[str, HeadPrediction]:
        """Heatmaps and image-pixel keypoints of every head in ``heads`` for one batch of crops (prompted when
        ``prompt`` is given); with ``project`` the keypoints are the ACAE projection (scores and heatmaps
        unchanged). A name of :attr:`added` gives that skeleton's keypoints from the AE heads' raw (unprojected)
        predictions and ``heatmaps=None``."""
        if project and self.projector is None:
            raise ValueError("predict(project=True) needs a Predictor built with an ACAE projector")
        unknown = [n for n in heads if n not in self.mix.names and n not in self.added]
        if unknown:
            raise ValueError(
                f"no head or added skeleton {unknown}; heads: {self.mix.names}, added: {list(self.added)}"
            )
        real = [n for n in heads if n not in self.added]
        run = self.projector.heads_needed(real) if project else list(real)
        for name in heads:
            if name in self.added:
                run += [h for h in self.added[name].heads if h not in run]
        maps = self.heatmaps(images, run, prompt)
        preds = {n: HeadPrediction(h, self.decode(h, n, center, scale, use_udp)) for n, h in maps.items()}
        for name in heads:
            if name in self.added:
                extra = self.added[name]
                preds[name] = HeadPrediction(None, extra({h: preds[h].keypoints for h in extra.heads}))
        if project:
            projected = self.projector({n: p.keypoints for n, p in preds.items() if n not in self.added})
            preds = {
                n: p if n in self.added else HeadPrediction(p.heatmaps, projected[n])
                for n, p in preds.items()
            }
        return {n: preds[n] for n in heads}

    def predict_batch(
        self,
        batch: Mapping[str, Any],
        dataset: str,
        heads: Sequence[str] | None = None,
        project: bool = False,
    ) -> dict[str, HeadPrediction]:
        """:meth:`predict` on a batch dict of ``dataset``'s loader (its crops' geometry); default: its own head."""
        heads = [dataset] if heads is None else list(heads)
        use_udp = self.mix.dataset(dataset).use_udp
        return self.predict(batch["image"], batch["center"], batch["scale"], heads, use_udp, project)

    def vote(
        self, preds: Mapping[str, HeadPrediction], target: str, method: str, batch: Mapping[str, Any]
    ) -> np.ndarray:
        """MDPN multi-branch voting (:func:`multipose.bridges.voting.vote`) of ``preds`` (every head's prediction
        on a batch of ``target``'s loader) for ``target``'s skeleton: ``[B, K_target, 3]`` image keypoints.
        Heatmaps of heads sharing the target's codec are averaged and decoded once with the batch's crops."""
        from multipose.bridges.voting import vote

        use_udp = self.mix.dataset(target).use_udp
        return vote(
            target,
            {h: p.heatmaps for h, p in preds.items()},
            {h: p.keypoints for h, p in preds.items()},
            self.mix.skeletons,
            self.mix.codecs,
            method,
            decode=lambda hm: self.decode(hm, target, batch["center"], batch["scale"], use_udp),
        )


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
