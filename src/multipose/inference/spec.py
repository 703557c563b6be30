"""A frozen description of a data mix, as the model side needs it: dataset names (= head names, in mix order),
skeletons, codecs, metrics, input and heatmap sizes and the crop geometry (``use_udp``).

The DataModule writes it (:meth:`multipose.data.datamodule.MultiPoseDataModule.describe`, a plain dict that is
stored in the checkpoint's hyper-parameters); validation, the :class:`~multipose.inference.Predictor` and the
predict CLI read it through :class:`MixSpec`, so none of them reaches back into the DataModule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = ["DatasetSpec", "MixSpec"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the mix: its head's skeleton (name or YAML path), heatmap codec, metric and whether its
    crops use the UDP affine."""

    name: str
    skeleton: str
    codec: str = "udp"
    metric: str = "coco"
    use_udp: bool = True
    metric_options: Mapping[str, Any] = field(default_factory=dict)  # the data entry's evaluator options


@dataclass(frozen=True)
class MixSpec:
    """The mix: ``datasets`` in mix order, ``input_size`` / ``heatmap_size`` ``(H, W)``, target ``sigma``."""

    datasets: tuple[DatasetSpec, ...]
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.datasets]

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"dataset {name!r} is not part of the mix {self.names}")

    @cached_property
    def skeletons(self) -> dict[str, Any]:
        from multipose.skeletons import get_skeleton

        return {d.name: get_skeleton(d.skeleton) for d in self.datasets}

    @cached_property
    def codecs(self) -> dict[str, Any]:
        from multipose.data.codecs import build_codec

        return {
            d.name: build_codec(d.codec, self.input_size, self.heatmap_size, self.sigma)
            for d in self.datasets
        }

    # ----------------------------------------------------------------------------------------- plain dicts
    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what ``describe()`` returns and checkpoints store)."""
        return {
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
            "sigma": float(self.sigma),
            "datasets": {
                d.name: {
                    "skeleton": d.skeleton,
                    "codec": d.codec,
                    "metric": d.metric,
                    "use_udp": d.use_udp,
                    "metric_options": dict(d.metric_options),
                }
                for d in self.datasets
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "mix description") -> MixSpec:
        """Inverse of :meth:`to_dict`; a missing or malformed field raises ``ValueError`` naming it."""
        if isinstance(raw, MixSpec):
            return raw
        missing = [k for k in ("input_size", "heatmap_size", "datasets") if k not in raw]
        if missing:
            raise ValueError(f"{where}: missing {missing}; build it with MultiPoseDataModule.describe()")
        datasets = []
        for name, entry in dict(raw["datasets"]).items():
            if "skeleton" not in entry:
                raise ValueError(f"{where}: datasets.{name} has no 'skeleton'")
            datasets.append(
                DatasetSpec(
                    name=str(name),
                    skeleton=str(entry["skeleton"]),
                    codec=str(entry.get("codec", "udp")),
                    metric=str(entry.get("metric", "coco")),
                    use_udp=bool(entry.get("use_udp", str(entry.get("codec", "udp")) == "udp")),
                    metric_options=dict(entry.get("metric_options") or {}),
                )
            )
        if not datasets:
            raise ValueError(f"{where}: 'datasets' is empty")

        def pair(key: str) -> tuple[int, int]:
            try:
                h, w = (int(v) for v in raw[key])
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {key} must be [H, W], got {raw[key]!r}") from None
            return h, w

        return cls(tuple(datasets), pair("input_size"), pair("heatmap_size"), float(raw.get("sigma", 2.0)))

    @classmethod
    def from_model_config(
        cls, model_config: Mapping[str, Any], codec: str = "udp", sigma: float = 2.0
    ) -> MixSpec:
        """A description for a checkpoint that stores none (written before it was recorded): every head with
        ``codec`` (default UDP, the ViTPose setting), sizes from the model config (heatmaps = input / 4)."""
        backbone = dict(model_config.get("backbone") or {})
        if "img_size" not in backbone:
            raise ValueError("model_config.backbone.img_size is missing; cannot tell the input size")
        h, w = (int(v) for v in backbone["img_size"])
        hm = model_config.get("heatmap_size") or [h // 4, w // 4]
        datasets = tuple(
            DatasetSpec(
                name=str(n),
                skeleton=str(spec["skeleton"]),
                codec=codec,
                metric="coco",
                use_udp=codec == "udp",
            )
            for n, spec in dict(model_config["heads"]).items()
        )
        return cls(datasets, (h, w), (int(hm[0]), int(hm[1])), float(sigma))
