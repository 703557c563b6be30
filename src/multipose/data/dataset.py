"""Map-style datasets that turn :class:`~multipose.data.records.Instance` records into training samples.

:class:`TopDownDataset` is one dataset (one skeleton): image file -> RGB array -> ``TopDownTransform`` with a
per-sample ``numpy.random.Generator`` -> ``codec.encode`` -> targets zero-padded to ``kmax`` keypoints.
:class:`MixedDataset` routes the ``(dataset_idx, sample_idx, sample_seed)`` triples yielded by
:class:`~multipose.data.streams.MixedBatchSampler` to the right :class:`TopDownDataset`.

Per-sample dict (stacked by :func:`multipose.data.collate.collate_samples` into the batch dict of
``docs/architecture.md``)::

    image          float32 [3, H, W]      normalised crop
    dataset_idx    int64   []             index of the dataset in mix order
    heatmap        float32 [kmax, h, w]   target, zero beyond this skeleton's K
    heatmap_weight float32 [kmax]         target weight, zero on padding
    keypoints      float32 [kmax, 3]      ground truth (x, y, v) in IMAGE pixels, zero-padded
    num_keypoints  int64   []             K of this skeleton
    center, scale  float32 [2]            crop centre / padded box size [w, h], pixels (after augmentation)
    rotation       float32 []             degrees
    image_id, ann_id int64 []             ids (ann_id -1 for detections)
    bbox_score     float32 []             box score (1 for GT boxes)
    area           float32 []             instance area
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ImageReadError", "MixedDataset", "TopDownDataset", "read_rgb"]


class ImageReadError(OSError):
    """An image file is missing, unreadable, truncated or corrupt; the message names the file and the
    annotation that needed it."""


class _Transform(Protocol):
    def __call__(self, image: np.ndarray, instance: Any, rng: np.random.Generator) -> dict[str, Any]: ...


class _Codec(Protocol):
    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def _where(path: str | Path, ann_id: int | None) -> str:
    return f"{path}" + (f" (annotation id {ann_id})" if ann_id is not None else "")


def read_rgb(path: str | Path, ann_id: int | None = None) -> np.ndarray:
    """Read an image as ``uint8 [H, W, 3]`` RGB, refusing truncated JPEG/PNG files.

    ``cv2.imread`` silently returns a partially grey image for a truncated JPEG, so the encoded bytes are
    checked first (:func:`multipose.data.image_check.header_problem`): a JPEG must contain its end-of-image
    marker ``FFD9`` near the end of the file (inside entropy-coded data ``FF`` is always stuffed, so the
    marker cannot occur by accident), a PNG its ``IEND`` chunk. Raises :class:`ImageReadError` naming the
    file and ``ann_id``.
    """
    from multipose.data.image_check import TAIL_BYTES, header_problem

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ImageReadError(
            f"cannot read image {_where(path, ann_id)}: {err.strerror or err}. Check the dataset's img_dir "
            "and that the file exists (data.check_images=header finds such files at start-up)."
        ) from err
    problem = header_problem(data[:16], data[-TAIL_BYTES:], len(data))
    if problem is not None:
        raise ImageReadError(
            f"image {_where(path, ann_id)}: {problem}; re-download or re-extract it, or set "
            "data.on_bad_image=skip with data.check_images=header to leave it out at start-up"
        )
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageReadError(
            f"image {_where(path, ann_id)} could not be decoded (corrupt or unsupported format); "
            "re-download or remove it (data.check_images=decode finds such files at start-up)"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _pad_rows(array: np.ndarray, kmax: int) -> np.ndarray:
    """Zero-pad the first axis of ``array`` to ``kmax`` rows (float32)."""
    out = np.zeros((kmax, *array.shape[1:]), dtype=np.float32)
    out[: array.shape[0]] = array
    return out


class TopDownDataset(Dataset):
    """One dataset of top-down instances with one skeleton.

    Args:
        instances: the records (``multipose.data.records.Instance``); must not be empty.
        skeleton: the dataset's :class:`~multipose.skeletons.Skeleton` (K keypoints).
        transform: ``TopDownTransform``-like callable ``(image, instance, rng) -> dict`` (train or val).
        codec: heatmap codec with ``encode(keypoints [K,3] in input px) -> (heatmaps [K,h,w], weights [K])``.
        dataset_idx: index of this dataset in mix order (written into every sample).
        kmax: keypoint count every sample is padded to (the largest skeleton of the mix).
        name: dataset name, used in error messages.

    ``dataset[i]`` uses the seed ``i``; ``dataset[(i, seed)]`` uses ``np.random.default_rng(seed)``, which is
    how the mixed-batch sampler makes augmentation independent of DataLoader workers.
    """

    def __init__(
        self,
        instances: Sequence[Any],
        skeleton: Any,
        transform: _Transform,
        codec: _Codec,
        dataset_idx: int,
        kmax: int,
        name: str | None = None,
    ):
        self.name = name or f"dataset #{dataset_idx}"
        if len(instances) == 0:
            raise ValueError(
                f"{self.name}: the instance list is empty; check the annotation file and the instance filters "
                "(no annotated person with keypoints and a valid box?)"
            )
        k = int(skeleton.num_keypoints)
        if kmax < k:
            raise ValueError(f"{self.name}: kmax={kmax} is smaller than the skeleton's {k} keypoints")
        bad = next((inst for inst in instances if np.asarray(inst.keypoints).shape != (k, 3)), None)
        if bad is not None:
            raise ValueError(
                f"{self.name}: annotation id {bad.ann_id} in {bad.image_path} has keypoints of shape "
                f"{np.asarray(bad.keypoints).shape}, but skeleton {skeleton.name!r} has {k} keypoints; "
                "check the dataset's skeleton in the data config"
            )
        self.instances = list(instances)
        self.skeleton = skeleton
        self.transform = transform
        self.codec = codec
        self.dataset_idx = int(dataset_idx)
        self.kmax = int(kmax)

    def __len__(self) -> int:
        return len(self.instances)

    @staticmethod
    def _split_key(key: int | tuple[int, int]) -> tuple[int, int]:
        if isinstance(key, (tuple, list)):
            i, seed = key
            return int(i), int(seed)
        return int(key), int(key)

    def load(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Like ``dataset[key]`` but also returns the raw transform output (crop-space keypoints, ``flipped``
        ...), for visualisation and debugging."""
        i, seed = self._split_key(key)
        if not 0 <= i < len(self.instances):
            raise IndexError(f"{self.name}: sample index {i} out of range [0, {len(self.instances)})")
        inst = self.instances[i]
        image = read_rgb(inst.image_path, inst.ann_id)
        rng = np.random.default_rng(seed)
        try:
            out = self.transform(image, inst, rng)
            heatmaps, weights = self.codec.encode(np.asarray(out["keypoints"], dtype=np.float32))
        except Exception as err:
            if hasattr(err, "add_note"):  # Python >= 3.11: keep the original exception type
                err.add_note(f"while loading {self.name}: {_where(inst.image_path, inst.ann_id)}")
            raise
        k = self.skeleton.num_keypoints
        sample = {
            "image": torch.as_tensor(np.ascontiguousarray(out["image"], dtype=np.float32)),
            "dataset_idx": torch.tensor(self.dataset_idx, dtype=torch.int64),
            "heatmap": torch.from_numpy(_pad_rows(heatmaps, self.kmax)),
            "heatmap_weight": torch.from_numpy(_pad_rows(np.asarray(weights).reshape(k), self.kmax)),
            "keypoints": torch.from_numpy(_pad_rows(np.asarray(inst.keypoints, dtype=np.float32), self.kmax)),
            "num_keypoints": torch.tensor(k, dtype=torch.int64),
            "center": torch.as_tensor(np.asarray(out["center"], dtype=np.float32).reshape(2)),
            "scale": torch.as_tensor(np.asarray(out["scale"], dtype=np.float32).reshape(2)),
            "rotation": torch.tensor(float(out.get("rotation", 0.0)), dtype=torch.float32),
            "image_id": torch.tensor(int(inst.image_id), dtype=torch.int64),
            "ann_id": torch.tensor(int(inst.ann_id), dtype=torch.int64),
            "bbox_score": torch.tensor(float(inst.score), dtype=torch.float32),
            "area": torch.tensor(float(inst.area), dtype=torch.float32),
        }
        return sample, out

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.load(key)[0]


class MixedDataset(Dataset):
    """Routes ``(dataset_idx, sample_idx, sample_seed)`` to ``datasets[dataset_idx][(sample_idx, seed)]``.

    ``datasets[d].dataset_idx`` must equal ``d`` and all datasets must pad to the same ``kmax``.
    """

    def __init__(self, datasets: Sequence[TopDownDataset]):
        if not datasets:
            raise ValueError("MixedDataset needs at least one dataset")
        for d, ds in enumerate(datasets):
            if ds.dataset_idx != d:
                raise ValueError(
                    f"{ds.name} has dataset_idx {ds.dataset_idx} but sits at position {d} of the mix"
                )
        kmax = {ds.kmax for ds in datasets}
        if len(kmax) != 1:
            raise ValueError(f"all datasets of a mix must pad to the same kmax, got {sorted(kmax)}")
        self.datasets = list(datasets)
        self.sizes = [len(ds) for ds in datasets]

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, ref: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        d, i, seed = ref
        return self.datasets[d][(i, seed)]
