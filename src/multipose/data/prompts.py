"""Pose prompts for training and validation samples (``data.prompt``, ExtPose-style second input modality).

Every sample of a dataset built with ``data.prompt`` carries fixed-size padded prompt tensors in the batch dict
(see :mod:`multipose.models.prompt_tokens` for their meaning)::

    prompt_keypoints float32 [P, 3]  (x, y, confidence) in crop input pixels
    prompt_tags      int64   [P]     row of the keypoint's semantic tag in the model's tag list
    prompt_skeletons int64   [P]     row of the prompt's skeleton in the model's skeleton list
    prompt_valid     bool    [P]     False: padding, unlabelled, dropped, or the whole prompt masked
    image_valid      bool    []      False: the image modality is masked for this sample

Prompt sources (``sources``: name -> weight, one drawn per sample; weight 0 = off):

* ``own``: the sample's ground truth in its own skeleton, corrupted (below);
* ``skeleton``: the joints of ``skeleton`` from the record's ``extra_gt`` (the synthetic world's hidden ground
  truth, or any reader that fills it), corrupted. Hidden ground truth is used **only as a prompt**, never as a
  target, and only with ``use_extra_gt: true`` (a sample without those joints gets no prompt);
* ``results``: a detector's predictions, a COCO keypoint results file per dataset (``results: {<dataset>:
  {file, skeleton}}``), matched to the record by image id and the best box IoU (>= ``results_iou``), used as
  predicted (confidence = keypoint score), never corrupted.

Corruption (ground-truth sources): each left/right pair is swapped with probability ``swap``, every joint moves by
Gaussian noise of std ``noise`` x the crop's longer side, then each joint is dropped with probability ``drop``;
kept joints have confidence 1.

Modality masking (training only): the whole prompt is masked with probability ``prompt_mask_prob`` (0.5, as
ExtPose); when the prompt is kept, the image is masked with probability ``image_mask_prob`` (so the pose-only path
learns; never both). Validation samples get the same corruption (seeded by the sample) and no masking.

The prompt's random draws use their own generator seeded from the sample seed, so the image, its augmentation and
the targets are bit-identical to a run without prompts (a paired baseline sees the same batches).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "PROMPT_SOURCES",
    "PromptMaker",
    "PromptSettings",
    "PromptedDataset",
    "load_results",
    "match_result",
]

PROMPT_SOURCES = ("own", "skeleton", "results")
_SALT = 0x5EED_9E37  # the prompt generator's stream, independent of the augmentation's


class PromptConfigError(ValueError):
    """A ``data.prompt`` setting that cannot work; the message names the field."""


@dataclass(frozen=True)
class PromptSettings:
    """``data.prompt`` (see the module docstring)."""

    sources: Mapping[str, float] = field(default_factory=lambda: {"own": 1.0})
    skeleton: str | None = None
    use_extra_gt: bool = False
    results: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    results_iou: float = 0.3
    noise: float = 0.05
    drop: float = 0.2
    swap: float = 0.1
    prompt_mask_prob: float = 0.5
    image_mask_prob: float = 0.1
    image_mask: str = "token"
    val_source: str = "own"
    max_tokens: int | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PromptSettings | None:
        if cfg is None:
            return None
        cfg = dict(cfg)
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise PromptConfigError(f"data.prompt has unknown keys {unknown}; known: {sorted(known)}")
        if isinstance(cfg.get("sources"), str):
            cfg["sources"] = {cfg["sources"]: 1.0}
        out = cls(**cfg)
        out.check()
        return out

    def check(self) -> None:
        bad = sorted(set(self.sources) - set(PROMPT_SOURCES))
        if bad or not self.sources:
            raise PromptConfigError(
                f"data.prompt.sources names {bad or 'nothing'}; choose from {PROMPT_SOURCES}"
            )
        if any(float(w) < 0 for w in self.sources.values()) or sum(map(float, self.sources.values())) <= 0:
            raise PromptConfigError(
                f"data.prompt.sources weights must be >= 0 with a positive sum: {self.sources}"
            )
        if self.val_source not in PROMPT_SOURCES:
            raise PromptConfigError(
                f"data.prompt.val_source={self.val_source!r}; choose from {PROMPT_SOURCES}"
            )
        uses = {n for n, w in self.sources.items() if float(w) > 0} | {self.val_source}
        if "skeleton" in uses:
            if not self.skeleton:
                raise PromptConfigError(
                    "data.prompt: source 'skeleton' needs data.prompt.skeleton (a skeleton name)"
                )
            if not self.use_extra_gt:
                raise PromptConfigError(
                    "data.prompt: source 'skeleton' reads the records' extra_gt (the synthetic world's hidden ground "
                    "truth); set data.prompt.use_extra_gt=true to allow it as a prompt source"
                )
        if "results" in uses and not self.results:
            raise PromptConfigError(
                "data.prompt: source 'results' needs data.prompt.results: {dataset: {file, skeleton}}"
            )
        for name in ("noise", "drop", "swap", "prompt_mask_prob", "image_mask_prob", "results_iou"):
            v = float(getattr(self, name))
            if v < 0 or (name != "noise" and v > 1):
                raise PromptConfigError(
                    f"data.prompt.{name}={v} must be in [0, 1]"
                    if name != "noise"
                    else f"data.prompt.noise={v} must be >= 0"
                )
        if self.image_mask not in ("token", "zero"):
            raise PromptConfigError(f"data.prompt.image_mask={self.image_mask!r}; choose token or zero")

    def skeleton_names(self, mix_skeletons: Sequence[str]) -> list[str]:
        """Skeletons prompts may come in: the mix's, then the prompt-only ones (order = embedding rows)."""
        extra = [self.skeleton] if self.skeleton else []
        extra += [str(r.get("skeleton")) for r in self.results.values() if r.get("skeleton")]
        from multipose.skeletons import get_skeleton

        return list(dict.fromkeys(get_skeleton(s).name for s in [*mix_skeletons, *extra]))


# ----------------------------------------------------------------------------------------------- results
def load_results(path: str | Path, skeleton: Any, field_name: str = "data.prompt.results") -> dict[int, list]:
    """A COCO keypoint results file -> ``{image_id: [(keypoints [K, 3] image px, score, box xywh | None)]}``."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        raise PromptConfigError(f"{field_name}: no such results file {path}") from None
    except json.JSONDecodeError as err:
        raise PromptConfigError(f"{field_name}: {path} is not valid JSON ({err})") from None
    if not isinstance(rows, list):
        raise PromptConfigError(
            f"{field_name}: {path} must hold a COCO results list [{{image_id, keypoints, score}}]"
        )
    k = int(skeleton.num_keypoints)
    out: dict[int, list] = {}
    for i, r in enumerate(rows):
        kp = np.asarray(r.get("keypoints", []), dtype=np.float32) if isinstance(r, Mapping) else np.zeros(0)
        if kp.size != 3 * k or "image_id" not in r:
            raise PromptConfigError(
                f"{field_name}: {path} entry {i} needs image_id and {3 * k} keypoint values for skeleton "
                f"{skeleton.name!r}, got {kp.size} values"
            )
        box = r.get("bbox")
        out.setdefault(int(r["image_id"]), []).append(
            (
                kp.reshape(k, 3),
                float(r.get("score", 1.0)),
                None if box is None else np.asarray(box, np.float32),
            )
        )
    return out


def _box_of(kp: np.ndarray) -> np.ndarray:
    sel = kp[:, 2] > 0
    if not sel.any():
        return np.zeros(4, np.float32)
    x0, y0 = kp[sel, :2].min(0)
    x1, y1 = kp[sel, :2].max(0)
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def match_result(box: np.ndarray, candidates: Sequence[tuple], min_iou: float) -> np.ndarray | None:
    """Keypoints of the candidate whose box (its ``bbox``, else its keypoints' box) overlaps ``box`` most."""
    best, best_iou = None, min_iou
    for kp, _, cbox in candidates:
        iou = _iou(np.asarray(box, np.float32), cbox if cbox is not None else _box_of(kp))
        if iou >= best_iou:
            best, best_iou = kp, iou
    return best


def pack_prompt(
    keypoints: np.ndarray | None, tag_rows: Sequence[int], skeleton_row: int, max_tokens: int
) -> dict[str, torch.Tensor]:
    """One crop's padded prompt tensors from crop-pixel ``keypoints [K, 3]`` (confidence 0 = not given; None:
    no prompt), the tag row of each joint and the prompt skeleton's row; ``image_valid`` True."""
    kp = np.zeros((max_tokens, 3), np.float32)
    tags = np.zeros(max_tokens, np.int64)
    valid = np.zeros(max_tokens, bool)
    if keypoints is not None:
        k = len(keypoints)
        if k > max_tokens:
            raise ValueError(f"a prompt of {k} joints does not fit max_tokens={max_tokens}")
        kp[:k] = keypoints
        kp[:k, 2] = np.clip(kp[:k, 2], 0.0, 1.0)
        tags[:k] = tag_rows
        valid[:k] = keypoints[:, 2] > 0
    return {
        "prompt_keypoints": torch.from_numpy(kp),
        "prompt_tags": torch.from_numpy(tags),
        "prompt_skeletons": torch.full((max_tokens,), int(skeleton_row), dtype=torch.int64),
        "prompt_valid": torch.from_numpy(valid),
        "image_valid": torch.tensor(True),
    }


# ----------------------------------------------------------------------------------------------- the maker
class PromptMaker:
    """Builds one sample's prompt tensors.

    Args:
        settings: the ``data.prompt`` settings.
        skeleton: the dataset's skeleton; ``dataset``: its name (results lookup).
        layout: ``model_config["prompt"]`` (``tags``, ``skeletons``): fixes the tag / skeleton rows.
        input_size: crop (H, W); ``max_tokens``: P.
        train: training (random source, masking) or validation (``val_source``, no masking).
    """

    def __init__(
        self,
        settings: PromptSettings,
        skeleton: Any,
        dataset: str,
        layout: Mapping[str, Any],
        input_size: Sequence[int],
        max_tokens: int,
        train: bool,
    ) -> None:
        from multipose.skeletons import get_skeleton

        self.s, self.train, self.dataset = settings, train, dataset
        self.own = skeleton
        self.other = get_skeleton(settings.skeleton) if settings.skeleton else None
        self.tag_row = {t: i for i, t in enumerate(layout["tags"])}
        self.skel_row = {n: i for i, n in enumerate(layout["skeletons"])}
        self.size = float(max(input_size))
        self.p = int(max_tokens)
        names = [n for n, w in settings.sources.items() if float(w) > 0] if train else [settings.val_source]
        weights = np.array([float(settings.sources.get(n, 1.0)) for n in names]) if train else np.ones(1)
        self.sources, self.weights = names, weights / weights.sum()
        self.results = None
        self.results_skeleton = None
        if "results" in self.sources:
            entry = settings.results.get(dataset)
            if entry is not None:
                self.results_skeleton = get_skeleton(entry.get("skeleton") or skeleton.name)
                self.results = load_results(
                    entry["file"], self.results_skeleton, f"data.prompt.results.{dataset}"
                )
        for sk in (self.own, self.other, self.results_skeleton):
            if sk is not None and sk.num_keypoints > self.p:
                raise PromptConfigError(
                    f"data.prompt.max_tokens={self.p} is smaller than skeleton {sk.name!r} ({sk.num_keypoints} joints)"
                )

    def _corrupt(self, kp: np.ndarray, skeleton: Any, rng: np.random.Generator) -> np.ndarray:
        kp = kp.copy()
        for i, j in skeleton.flip_pairs:
            if rng.random() < self.s.swap:
                kp[[i, j], :2] = kp[[j, i], :2]
        kp[:, :2] += rng.normal(0.0, self.s.noise * self.size, size=(len(kp), 2))
        kp[rng.random(len(kp)) < self.s.drop, 2] = 0
        kp[kp[:, 2] > 0, 2] = 1.0
        return kp

    def _to_crop(self, kp: np.ndarray, skeleton: Any, out: Mapping[str, Any]) -> np.ndarray:
        """Image-pixel joints of ``skeleton`` -> crop pixels of this sample (its affine, left/right relabelled
        in a flipped crop as the transform does); unlabelled joints are zero."""
        from multipose.data.geometry import warp_points

        labelled = kp[:, 2] > 0
        crop = np.zeros((len(kp), 3), np.float32)
        crop[:, :2] = warp_points(kp[:, :2].astype(np.float64), out["matrix"])
        crop[:, 2] = kp[:, 2]
        crop[~labelled] = 0
        return crop[list(skeleton.flip_indices)] if out.get("flipped") else crop

    def __call__(self, instance: Any, out: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _SALT])
        source = self.sources[int(rng.choice(len(self.sources), p=self.weights))]
        kp, skeleton = None, self.own
        if source == "own":
            kp = self._corrupt(np.asarray(out["keypoints"], np.float32), skeleton, rng)
        elif source == "skeleton":
            extra = getattr(instance, "extra_gt", None) or {}
            skeleton = self.other
            if skeleton.name in extra:
                kp = self._corrupt(
                    self._to_crop(np.asarray(extra[skeleton.name]), skeleton, out), skeleton, rng
                )
        elif self.results is not None:
            skeleton = self.results_skeleton
            found = match_result(
                instance.bbox, self.results.get(int(instance.image_id), []), self.s.results_iou
            )
            if found is not None:
                kp = self._to_crop(np.asarray(found), skeleton, out)
                kp[:, 2] = np.clip(kp[:, 2], 0.0, 1.0)  # the detector's keypoint scores
        row = self.skel_row.get(skeleton.name)
        if kp is not None and row is None:
            raise PromptConfigError(
                f"prompt skeleton {skeleton.name!r} is not in the model's {list(self.skel_row)}"
            )
        out = pack_prompt(kp, [self.tag_row[t] for t in skeleton.semantic], row or 0, self.p)
        if self.train:
            if rng.random() < self.s.prompt_mask_prob:
                out["prompt_valid"][:] = False
            elif bool(out["prompt_valid"].any()) and rng.random() < self.s.image_mask_prob:
                out["image_valid"] = torch.tensor(False)
        return out


class PromptedDataset(torch.utils.data.Dataset):
    """A :class:`~multipose.data.dataset.TopDownDataset` whose samples also carry a prompt (same keys otherwise;
    every other attribute is the wrapped dataset's)."""

    def __init__(self, dataset: Any, maker: PromptMaker) -> None:
        self.dataset, self.maker = dataset, maker

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "maker"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        sample, out = self.dataset.load(key)
        i, seed = self.dataset._split_key(key)
        sample.update(self.maker(self.dataset.instances[i], out, seed))
        return sample, out

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.load(key)[0]
