"""The evaluator interface shared by every metric: accumulate predictions per batch, gather them across
ranks (``state``/``merge``), drop repeated samples, and match predictions to ground-truth records.

Metric implementations live in :mod:`.evaluators` (COCO AP, PCKh, PCK) and :mod:`.cross_skeleton`; both import
this module and nothing imports them back, so there is no import circle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BaseEvaluator", "skeleton_sigmas"]

log = logging.getLogger(__name__)

_STATE_KEYS = ("preds", "image_ids", "ann_ids", "bbox_scores", "areas", "sample_ids")


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def skeleton_sigmas(skeleton: Any) -> np.ndarray:
    """``[K]`` float64 sigmas of a skeleton, checked against its keypoint count."""
    names = tuple(skeleton.keypoints)
    sigmas = np.asarray(skeleton.sigmas, dtype=np.float64).reshape(-1)
    if sigmas.shape[0] != len(names):
        raise ValueError(
            f"skeleton '{getattr(skeleton, 'name', '?')}' has {len(names)} keypoints but {sigmas.shape[0]} "
            "sigmas; fix `sigmas` in its YAML file."
        )
    return sigmas


class BaseEvaluator:
    """Accumulates predictions; subclasses implement :meth:`compute`.

    Args:
        dataset_name: name of the dataset in the mix (used in file names and messages).
        instances: ground-truth records of the validation split.
        skeleton: the skeleton the predictions are in (``keypoints``, ``sigmas``, ``name``).
    """

    metric: str = ""

    def __init__(self, dataset_name: str, instances: Sequence[Any], skeleton: Any) -> None:
        self.dataset_name = dataset_name
        self.instances = list(instances)
        self.skeleton = skeleton
        self.num_keypoints = len(tuple(skeleton.keypoints))
        self._chunks: list[dict[str, np.ndarray]] = []

    # ------------------------------------------------------------------ accumulation
    def reset(self) -> None:
        """Forget every accumulated prediction."""
        self._chunks = []

    def update(
        self,
        preds: Any,
        image_ids: Any,
        ann_ids: Any = None,
        bbox_scores: Any = None,
        areas: Any = None,
        sample_ids: Any = None,
        scales: Any = None,
    ) -> None:
        """Add a batch of predictions.

        Args:
            preds: ``[B, K, 3]`` ``(x, y, score)`` in image pixels, ``K`` = this skeleton's.
            image_ids: ``[B]``.
            ann_ids: ``[B]`` ground-truth annotation ids (``-1`` for detection boxes).
            bbox_scores: ``[B]`` box scores (default 1.0, i.e. ground-truth boxes).
            areas: ``[B]`` instance areas in pixels² used by OKS-NMS (default: unknown).
            sample_ids: ``[B]`` optional index of the sample in the validation set, the most
                reliable key for dropping padded duplicates; when every prediction has one, the
                predictions are evaluated in this order (mmpose sorts by ``bbox_id``), whatever
                the order of the gathered ranks.
            scales: ``[B, 2]`` padded, aspect-fixed box size ``(w, h)`` in pixels (the batch's
                ``scale``). When given, the OKS-NMS area is ``w * h`` (mmpose's
                ``np.prod(scale * 200)``) and replaces ``areas``.
        """
        p = _to_numpy(preds, np.float32)
        if p.ndim != 3 or p.shape[-1] != 3:
            raise ValueError(f"{self._where()}: preds must be [B, K, 3] (x, y, score), got shape {p.shape}")
        if p.shape[1] != self.num_keypoints:
            raise ValueError(
                f"{self._where()}: preds have K={p.shape[1]} keypoints but skeleton "
                f"'{getattr(self.skeleton, 'name', '?')}' has {self.num_keypoints}; slice the padded "
                "prediction to the skeleton's num_keypoints before update()."
            )
        b = p.shape[0]

        def vec(x: Any, name: str, dtype: Any, default: float) -> np.ndarray:
            if x is None:
                return np.full(b, default, dtype=dtype)
            v = _to_numpy(x, dtype).reshape(-1)
            if v.shape[0] != b:
                raise ValueError(
                    f"{self._where()}: {name} has {v.shape[0]} entries for a batch of {b} predictions"
                )
            return v

        if scales is not None:
            sc = _to_numpy(scales, np.float64)
            if sc.shape != (b, 2):
                raise ValueError(
                    f"{self._where()}: scales must be [B, 2] (w, h) pixels for a batch of {b}, got shape {sc.shape}"
                )
            areas = sc[:, 0] * sc[:, 1]
        self._chunks.append(
            {
                "preds": p,
                "image_ids": vec(image_ids, "image_ids", np.int64, -1),
                "ann_ids": vec(ann_ids, "ann_ids", np.int64, -1),
                "bbox_scores": vec(bbox_scores, "bbox_scores", np.float32, 1.0),
                "areas": vec(areas, "areas", np.float32, np.nan),
                "sample_ids": vec(sample_ids, "sample_ids", np.int64, -1),
            }
        )

    def state(self) -> dict[str, np.ndarray]:
        """Accumulated predictions as plain numpy arrays (picklable, for gathering)."""
        if not self._chunks:
            return {
                "preds": np.zeros((0, self.num_keypoints, 3), np.float32),
                **{
                    k: np.zeros(0, np.float32 if k in ("bbox_scores", "areas") else np.int64)
                    for k in _STATE_KEYS[1:]
                },
            }
        return {k: np.concatenate([c[k] for c in self._chunks]) for k in _STATE_KEYS}

    def merge(self, states: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Replace the accumulated predictions by the concatenation of ``states`` (in order).

        ``states`` are :meth:`state` outputs of every rank, this rank's own included (the
        result of an all-gather); repeated samples are dropped later by :meth:`compute`.
        """
        chunks = []
        for i, st in enumerate(states):
            missing = [k for k in _STATE_KEYS if k not in st]
            if missing:
                raise ValueError(f"{self._where()}: state {i} lacks {missing}; pass what state() returned")
            chunks.append({k: np.asarray(st[k]) for k in _STATE_KEYS})
        self._chunks = chunks

    def __len__(self) -> int:
        return sum(c["preds"].shape[0] for c in self._chunks)

    def _deduplicated(self) -> dict[str, np.ndarray]:
        st = self.state()
        n = st["preds"].shape[0]
        seen: set[tuple] = set()
        keep = np.zeros(n, dtype=bool)
        for i in range(n):
            if st["sample_ids"][i] >= 0:
                key: tuple = ("sample", int(st["sample_ids"][i]))
            elif st["ann_ids"][i] >= 0:
                key = ("ann", int(st["ann_ids"][i]))
            else:
                key = ("det", int(st["image_ids"][i]), float(st["areas"][i]), float(st["bbox_scores"][i]))
            if key not in seen:
                seen.add(key)
                keep[i] = True
        if not keep.all():
            log.info(
                "%s: dropped %d repeated predictions (distributed padding)", self._where(), int((~keep).sum())
            )
        out = {k: v[keep] for k, v in st.items()}
        if out["sample_ids"].size and (out["sample_ids"] >= 0).all():
            order = np.argsort(out["sample_ids"], kind="stable")
            out = {k: v[order] for k, v in out.items()}
        return out

    def _where(self) -> str:
        return f"{type(self).__name__}(dataset='{self.dataset_name}')"

    def _instances_by_ann_id(self) -> dict[int, Any]:
        table: dict[int, Any] = {}
        for inst in self.instances:
            a = int(inst.ann_id)
            if a < 0:
                raise ValueError(
                    f"{self._where()}: instance of image {inst.image_id} has ann_id -1 (a detection box); "
                    f"'{self.metric}' needs ground-truth instances with their annotation ids."
                )
            if a in table:
                raise ValueError(
                    f"{self._where()}: ann_id {a} appears twice in the ground truth; ids must be unique"
                )
            table[a] = inst
        return table

    def _gather_gt(self, ann_ids: np.ndarray) -> list[Any]:
        table = self._instances_by_ann_id()
        missing = [int(a) for a in ann_ids if int(a) not in table]
        if missing:
            raise ValueError(
                f"{self._where()}: predictions for ann_ids {missing[:5]} (of {len(missing)}) have no ground-truth "
                "instance; pass the same split's instances and forward batch['ann_id'] to update()."
            )
        return [table[int(a)] for a in ann_ids]

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError
