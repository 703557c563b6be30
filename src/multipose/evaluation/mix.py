"""All the evaluation of one data mix: each dataset's own evaluator (its metric on its own head), cross-skeleton
evaluators (every other head against the hidden ground truth of its skeleton, synthetic world), cross-head
consistency (label-free, every mix), gathering across DDP ranks and ``val/score``.

Metric keys: ``val/<ds>/<metric>``, ``val/<ds>/cross/<head>/<metric>``, ``val/<ds>/consistency/CHD`` and
``.../CHD_p90`` (:mod:`.consistency`), ``val/<ds>/vote/<metric>`` (MDPN multi-branch voting,
``evaluation.voting: fill | average``, scored next to the head's own output) and ``val/score`` = mean of the
datasets' primary metrics (of the heads' own outputs, never of the voted ones).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .consistency import box_size, cross_head_distances, summarize_chd
from .cross_skeleton import CrossSkeletonEvaluator
from .evaluators import build_evaluator

__all__ = ["PRIMARY_METRIC", "MixEvaluation"]

log = logging.getLogger(__name__)

#: the metric of each kind that ``val/score`` averages
PRIMARY_METRIC = {"coco": "AP", "pckh": "PCKh@0.5", "pck": "PCK@0.2", "nme": "NME"}
#: primary metrics where lower is better: ``val/score`` averages ``1 - value`` for them, so it stays "higher is better"
LOWER_IS_BETTER = frozenset({"NME"})


class MixEvaluation:
    """Args:
    mix: the mix description (:class:`multipose.inference.MixSpec`): names, metrics, skeletons.
    instances: dataset name -> ground-truth records of its validation split (a mapping or a callable).
    options: ``conf/evaluation`` (``oks_nms_thr``, ``vis_thr``, ``soft_nms``, ``cross_skeleton``, ``consistency``);
        a dataset's own ``metric_options`` (its data entry) override them.
    images: optional dataset name -> every image of its validation annotation file, ``{image_id: extra image
        fields}`` (a mapping or a callable): COCO-style AP then scores predictions on images without people as
        false positives, and CrowdPose reads each image's ``crowdIndex``.

    Per validation batch of dataset ``ds``: run the heads :meth:`heads_for` names, then :meth:`update` with their
    image-pixel keypoints; at the end :meth:`compute` (gathers across ranks when DDP is initialised).
    """

    def __init__(
        self,
        mix: Any,
        instances: Mapping[str, Sequence[Any]] | Callable[[str], Sequence[Any]],
        options: Mapping[str, Any] | None = None,
        images: Mapping[str, Any] | Callable[[str], Any] | None = None,
        variants: Sequence[str] = (),
    ) -> None:
        from multipose.skeletons import correspondence

        opts = dict(options or {})
        get = instances if callable(instances) else instances.__getitem__
        get_images = None if images is None else (images if callable(images) else images.__getitem__)
        self.names = list(mix.names)
        self.evaluators: dict[str, Any] = {}
        self.cross: dict[str, dict[str, CrossSkeletonEvaluator]] = {}
        self.pairs: dict[str, dict[str, list[tuple[int, int]]]] = {}
        self._distances: dict[str, list[np.ndarray]] = {}
        self.voting = str(opts.get("voting", "none"))
        self.voted: dict[str, Any] = {}
        # bridge variants (alternate predictions): variant -> dataset -> own evaluator / head -> cross evaluator
        self.variants = [v for v in dict.fromkeys(variants) if v != "vote"]
        self._variant_heads: set[tuple[str, str, str]] = set()  # (variant, dataset, head) given to update()
        self.variant_own: dict[str, dict[str, Any]] = {v: {} for v in self.variants}
        self.variant_cross: dict[str, dict[str, dict[str, CrossSkeletonEvaluator]]] = {
            v: {} for v in self.variants
        }
        self._consistency = bool(opts.get("consistency", True))
        skeletons = mix.skeletons
        for name in self.names:
            gt = get(name)
            spec = mix.dataset(name)
            evaluator_opts = {
                "oks_nms_thr": opts.get("oks_nms_thr", 0.9),
                "vis_thr": opts.get("vis_thr", 0.2),
                "soft_nms": opts.get("soft_nms", False),
            }
            if get_images is not None and spec.metric == "coco":
                evaluator_opts["image_ids"] = get_images(name)
            evaluator_opts.update(
                dict(getattr(spec, "metric_options", None) or {})
            )  # the data entry's own win
            self.evaluators[name] = build_evaluator(spec.metric, name, gt, skeletons[name], **evaluator_opts)
            if self.voting != "none":  # the same metric on the voted keypoints
                self.voted[name] = build_evaluator(spec.metric, name, gt, skeletons[name], **evaluator_opts)
            if opts.get("cross_skeleton", True) and any(i.extra_gt for i in gt[:50]):
                self.cross[name] = {
                    h: CrossSkeletonEvaluator(name, h, gt, skeletons[h])
                    for h in self.names
                    if h != name and any(skeletons[h].name in i.extra_gt for i in gt[:50])
                }
            for v in self.variants:
                self.variant_own[v][name] = build_evaluator(
                    spec.metric, name, gt, skeletons[name], **evaluator_opts
                )
                if name in self.cross:
                    self.variant_cross[v][name] = {
                        h: CrossSkeletonEvaluator(name, h, gt, skeletons[h]) for h in self.cross[name]
                    }
            if opts.get("consistency", True) or self.voting != "none":
                pairs = {h: correspondence(skeletons[name], skeletons[h]) for h in self.names if h != name}
                self.pairs[name] = {h: p for h, p in pairs.items() if p}
            self._distances[name] = []

    def heads_for(self, name: str) -> list[str]:
        """The heads to run on ``name``'s validation images: its own first, then those scored or compared."""
        extra = set(self.cross.get(name, {})) | set(self.pairs.get(name, {}))
        return [name] + [h for h in self.names if h in extra]

    def update(
        self,
        name: str,
        batch: Mapping[str, Any],
        keypoints: Mapping[str, np.ndarray],
        voted: np.ndarray | None = None,
        variants: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    ) -> None:
        """Add one batch of dataset ``name``: ``keypoints[head] [B, K_head, 3]`` in image pixels, ``batch`` the
        loader's batch dict (ids, box scores, areas, crop scale); ``voted`` ``[B, K_name, 3]`` the MDPN-voted
        keypoints when ``evaluation.voting`` is on; ``variants`` ``{variant: {head: [B, K_head, 3]}}`` the
        bridges' alternate predictions (every variant given at construction must be given, with the own head)."""
        ids = {
            "ann_ids": _numpy(batch["ann_id"]),
            "image_ids": _numpy(batch["image_id"]),
            "bbox_scores": _numpy(batch["bbox_score"]),
            "areas": _numpy(batch["area"]),
        }
        # OKS-NMS area = prod(scale) of the padded, aspect-fixed box, as mmpose
        self.evaluators[name].update(keypoints[name], scales=_numpy(batch["scale"]), **ids)
        if name in self.voted:
            if voted is None:
                raise ValueError(
                    f"evaluation.voting={self.voting}: update() of {name!r} needs the voted keypoints"
                )
            self.voted[name].update(voted, scales=_numpy(batch["scale"]), **ids)
        for head, evaluator in self.cross.get(name, {}).items():
            evaluator.update(keypoints[head], **ids)
        for v in self.variants:
            given = (variants or {}).get(v)
            if given is None or name not in given:
                raise ValueError(f"update() of {name!r}: variant {v!r} needs the keypoints of head {name!r}")
            self.variant_own[v][name].update(given[name], scales=_numpy(batch["scale"]), **ids)
            for head, evaluator in self.variant_cross[v].get(name, {}).items():
                if head in given:
                    evaluator.update(given[head], **ids)
                    self._variant_heads.add((v, name, head))
        pairs = self.pairs.get(name, {}) if self._consistency else {}
        if pairs:
            sizes = box_size(_numpy(batch["scale"]))
            self._distances[name] += [
                cross_head_distances(keypoints[name], keypoints[h], p, sizes).reshape(-1)
                for h, p in pairs.items()
            ]

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        """Gather (DDP), score and return the flat metrics, ``val/score`` last. Results files go to ``out_dir``
        (pass ``None`` on every rank but the first)."""
        metrics: dict[str, float] = {}
        primaries = []
        for name, evaluator in self.evaluators.items():
            _gather(evaluator)
            result = evaluator.compute(out_dir)
            metrics.update({f"val/{name}/{k}": float(v) for k, v in result.items()})
            primary = PRIMARY_METRIC[evaluator.metric]
            if primary in result:
                value = float(result[primary])
                primaries.append(1.0 - value if primary in LOWER_IS_BETTER else value)
            for cross in self.cross.get(name, {}).values():
                _gather(cross)
                metrics.update({f"val/{name}/{k}": float(v) for k, v in cross.compute().items()})
            if name in self.voted:
                _gather(self.voted[name])
                voted = self.voted[name].compute(None)
                metrics.update({f"val/{name}/vote/{k}": float(v) for k, v in voted.items()})
            for v in self.variants:
                _gather(self.variant_own[v][name])
                own = self.variant_own[v][name].compute(None)
                metrics.update({f"val/{name}/{v}/{k}": float(val) for k, val in own.items()})
                for head, cross in self.variant_cross[v].get(name, {}).items():
                    if (
                        v,
                        name,
                        head,
                    ) not in self._variant_heads:  # the bridge gives no such head's keypoints
                        continue
                    _gather(cross)
                    prefix = f"cross/{head}/"
                    metrics.update(
                        {
                            f"val/{name}/{prefix}{v}/{k[len(prefix) :]}": float(val)
                            for k, val in cross.compute().items()
                        }
                    )
            if self._consistency and self.pairs.get(name):
                local = np.concatenate(self._distances[name]) if self._distances[name] else np.zeros(0)
                chd = summarize_chd(np.concatenate(_all_gather(local)))
                metrics.update({f"val/{name}/consistency/{k}": v for k, v in chd.items()})
        metrics["val/score"] = float(np.mean(primaries)) if primaries else float("nan")
        return metrics


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` outside DDP)."""
    if not _distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _gather(evaluator: Any) -> None:
    """Merge an evaluator's state across ranks (every rank ends up with all predictions)."""
    if _distributed():
        evaluator.merge(_all_gather(evaluator.state()))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
