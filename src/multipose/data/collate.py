"""Stack per-sample dicts (from :class:`~multipose.data.dataset.TopDownDataset`) into the batch dict.

The batch contract (``docs/architecture.md``): every key of :data:`BATCH_DTYPES` is present, stacked along a
new first axis, with the listed dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["BATCH_DTYPES", "OPTIONAL_DTYPES", "collate_samples"]

#: key -> dtype of the batch contract.
BATCH_DTYPES: dict[str, torch.dtype] = {
    "image": torch.float32,
    "dataset_idx": torch.int64,
    "heatmap": torch.float32,
    "heatmap_weight": torch.float32,
    "keypoints": torch.float32,
    "num_keypoints": torch.int64,
    "center": torch.float32,
    "scale": torch.float32,
    "rotation": torch.float32,
    "image_id": torch.int64,
    "ann_id": torch.int64,
    "bbox_score": torch.float32,
    "area": torch.float32,
}

#: keys stacked when every sample has them (pose prompts, :mod:`multipose.data.prompts`).
OPTIONAL_DTYPES: dict[str, torch.dtype] = {
    "prompt_keypoints": torch.float32,
    "prompt_tags": torch.int64,
    "prompt_skeletons": torch.int64,
    "prompt_valid": torch.bool,
    "image_valid": torch.bool,
}


def collate_samples(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of per-sample dicts into a batch dict of tensors.

    Raises ``ValueError`` if the list is empty, a contract key is missing, or shapes disagree (for example
    two datasets padded to different ``kmax``), naming the key.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    batch: dict[str, torch.Tensor] = {}
    for key, dtype in BATCH_DTYPES.items():
        try:
            values = [torch.as_tensor(s[key]) for s in samples]
        except KeyError:
            raise ValueError(
                f"sample is missing batch key {key!r}; samples must come from TopDownDataset"
            ) from None
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(f"samples disagree on the shape of {key!r}: {sorted(shapes)}")
        batch[key] = torch.stack(values).to(dtype)
    for key, dtype in OPTIONAL_DTYPES.items():
        present = sum(key in s for s in samples)
        if present and present != len(samples):
            raise ValueError(
                f"only {present} of {len(samples)} samples carry {key!r}; a batch needs all or none"
            )
        if present:
            values = [torch.as_tensor(s[key]) for s in samples]
            if len({tuple(v.shape) for v in values}) != 1:
                raise ValueError(
                    f"samples disagree on the shape of {key!r} (data.prompt.max_tokens pads them)"
                )
            batch[key] = torch.stack(values).to(dtype)
    return batch
