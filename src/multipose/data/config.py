"""Typed data-mix configuration: one :class:`DatasetEntry` per dataset, validated before any file is read.

A data mix (``conf/data/*.yaml``) maps dataset names to entries like::

    syn_coco:
      format: coco                 # coco | coco_wholebody | mpii | interhand
      skeleton: coco               # a name known to multipose.skeletons (or a path to a skeleton YAML)
      codec: udp                   # udp | msra
      metric: coco                 # coco | pckh | pck
      half_body: true
      batch_count: 8               # samples of this dataset per GLOBAL batch (fixed mode)
      train: {ann_file: syn_coco/annotations/train.json, img_dir: syn_coco/images/train}
      val: {ann_file: ..., img_dir: ..., det_file: null, det_score_thr: 0.0, det_category_ids: [1]}

InterHand2.6M entries (``format: interhand``) may also name ``camera_file`` and ``joint_file`` per split;
by default they sit next to ``ann_file`` (``*_data.json`` -> ``*_camera.json``, ``*_joint_3d.json``).

Relative paths are relative to the mix's ``root``; absolute paths are used as they are. Every error message
names the dataset and the key and says what to change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "FORMATS",
    "METRICS",
    "MODES",
    "DataConfigError",
    "DatasetEntry",
    "SplitConfig",
    "parse_dataset_entries",
    "to_plain",
]

FORMATS = ("coco", "coco_wholebody", "mpii", "interhand")
METRICS = ("coco", "pckh", "pck", "nme")
MODES = ("fixed", "proportional")


class DataConfigError(ValueError):
    """A data-mix configuration error; the message says which dataset / key to fix."""


def to_plain(value: Any) -> Any:
    """OmegaConf containers (as passed by Hydra with ``_recursive_=False``) -> plain dicts / lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra, a dependency
        pass
    return value


def resolve_path(root: str | os.PathLike | None, path: str) -> str:
    """``path`` if absolute (after ``~`` expansion), else ``root / path``."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or root is None:
        return str(p)
    return str(Path(os.path.expanduser(str(root))) / p)


@dataclass(frozen=True)
class SplitConfig:
    """Files of one split. Paths are resolved (absolute or root-joined).

    ``det_category_ids``: detections kept by category (mmpose keeps ``category_id == 1``, the COCO
    person); ``None`` keeps every category. ``camera_file``/``joint_file``: InterHand2.6M only.
    """

    ann_file: str
    img_dir: str
    det_file: str | None = None
    det_score_thr: float = 0.0
    head_boxes: str | None = None  # MPII: the official mpii_gt_val.mat (head boxes + ground truth for PCKh)
    det_category_ids: tuple[int, ...] | None = (1,)
    camera_file: str | None = None
    joint_file: str | None = None

    def missing_files(self) -> list[tuple[str, str]]:
        """``(key, path)`` of every file or folder of this split that does not exist."""
        out = []
        if not Path(self.ann_file).is_file():
            out.append(("ann_file", self.ann_file))
        if not Path(self.img_dir).is_dir():
            out.append(("img_dir", self.img_dir))
        for key in ("det_file", "camera_file", "joint_file"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                out.append((key, path))
        if self.head_boxes is not None and not Path(self.head_boxes).is_file():
            out.append(("head_boxes", self.head_boxes))
        return out


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the mix (see the module docstring for the YAML form)."""

    name: str
    format: str
    skeleton: str
    train: SplitConfig
    val: SplitConfig
    batch_count: int = 0
    codec: str = "udp"
    metric: str = "coco"
    half_body: bool = True
    flip_test_shift: bool | None = None
    metric_options: Mapping[str, Any] = field(default_factory=dict)  # build_evaluator options of `metric`

    @property
    def use_udp(self) -> bool:
        """UDP codecs go with the UDP affine (``get_warp_matrix``), MSRA with the classic one."""
        return self.codec == "udp"

    def check_files(self, splits: Sequence[str] = ("train", "val")) -> None:
        """Raise :class:`DataConfigError` naming the dataset, key and path of every missing file."""
        problems = []
        for split in splits:
            for key, path in getattr(self, split).missing_files():
                problems.append(f"datasets.{self.name}.{split}.{key}: {path}")
        if problems:
            raise DataConfigError(
                f"dataset {self.name!r}: missing file(s)/folder(s):\n  "
                + "\n  ".join(problems)
                + "\nFix the path in the data config (relative paths are relative to data.root) "
                "or put the files there."
            )


_ENTRY_KEYS = {f.name for f in fields(DatasetEntry)} - {"name"}
_SPLIT_KEYS = {f.name for f in fields(SplitConfig)}


def _parse_split(name: str, split: str, raw: Any, root: str | None, fmt: str = "coco") -> SplitConfig:
    where = f"datasets.{name}.{split}"
    if not isinstance(raw, Mapping):
        raise DataConfigError(f"{where} must be a mapping with ann_file and img_dir, got {raw!r}")
    unknown = set(raw) - _SPLIT_KEYS
    if unknown:
        raise DataConfigError(
            f"{where} has unknown key(s) {sorted(unknown)}; valid keys: {sorted(_SPLIT_KEYS)}"
        )
    for key in ("ann_file", "img_dir"):
        if not raw.get(key):
            raise DataConfigError(
                f"{where}.{key} is missing; give the path (relative to data.root or absolute)"
            )
    det_file = raw.get("det_file")
    thr = raw.get("det_score_thr", 0.0)
    try:
        thr = float(thr if thr is not None else 0.0)
    except (TypeError, ValueError):
        raise DataConfigError(f"{where}.det_score_thr must be a number, got {thr!r}") from None
    if det_file is not None and split == "train":
        raise DataConfigError(
            f"{where}.det_file: detections are only used for validation; remove it from train"
        )
    cats = raw.get("det_category_ids", (1,))
    if cats is not None:
        if isinstance(cats, (int, str)) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in cats
        ):
            raise DataConfigError(
                f"{where}.det_category_ids must be a list of integers or null, got {cats!r}"
            )
        cats = tuple(int(c) for c in cats)
    ann_file = resolve_path(root, raw["ann_file"])
    hand_files: dict[str, str | None] = {}
    for key in ("camera_file", "joint_file"):
        value = raw.get(key)
        if value is not None and fmt != "interhand":
            raise DataConfigError(f"{where}.{key} is only used by format 'interhand'; remove it")
        hand_files[key] = resolve_path(root, value) if value else None
    if fmt == "interhand" and not all(hand_files.values()):
        from multipose.data.formats.interhand import companion_files
        from multipose.data.records import DatasetFormatError

        try:
            derived = dict(zip(("camera_file", "joint_file"), map(str, companion_files(ann_file))))
        except DatasetFormatError as err:
            raise DataConfigError(f"{where}: {err}") from None
        hand_files = {k: v or derived[k] for k, v in hand_files.items()}
    return SplitConfig(
        ann_file=ann_file,
        img_dir=resolve_path(root, raw["img_dir"]),
        det_file=resolve_path(root, det_file) if det_file else None,
        det_score_thr=thr,
        head_boxes=resolve_path(root, raw["head_boxes"]) if raw.get("head_boxes") else None,
        det_category_ids=cats,
        **hand_files,
    )


def parse_entry(name: str, raw: Any, root: str | None) -> DatasetEntry:
    """Validate one raw (dict) entry; no file is touched."""
    from multipose.data.codecs import available_codecs
    from multipose.skeletons import get_skeleton

    raw = to_plain(raw)
    if not isinstance(raw, Mapping):
        raise DataConfigError(
            f"datasets.{name} must be a mapping (format, skeleton, train, val, ...), got {raw!r}"
        )
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise DataConfigError(
            f"datasets.{name} has unknown key(s) {sorted(unknown)}; valid keys: {sorted(_ENTRY_KEYS)}"
        )
    for key in ("format", "skeleton", "train", "val"):
        if raw.get(key) is None:
            raise DataConfigError(f"datasets.{name}.{key} is required")
    fmt = str(raw["format"])
    if fmt not in FORMATS:
        raise DataConfigError(
            f"datasets.{name}.format = {fmt!r} is unknown; valid formats: {', '.join(FORMATS)}"
        )
    codec = str(raw.get("codec", "udp")).lower()
    if codec not in available_codecs():
        raise DataConfigError(
            f"datasets.{name}.codec = {raw.get('codec')!r} is unknown; valid codecs: {', '.join(available_codecs())}"
        )
    metric = str(raw.get("metric", "coco"))
    if metric not in METRICS:
        raise DataConfigError(
            f"datasets.{name}.metric = {metric!r} is unknown; valid metrics: {', '.join(METRICS)}"
        )
    metric_options = to_plain(raw.get("metric_options")) or {}
    try:
        from multipose.evaluation.evaluators import check_options

        if not isinstance(metric_options, Mapping):
            raise ValueError(f"must be a mapping of evaluator options, got {metric_options!r}")
        check_options(metric, metric_options, str(name))
    except ValueError as err:
        raise DataConfigError(f"datasets.{name}.metric_options: {err}") from None
    skeleton = raw["skeleton"]
    try:
        get_skeleton(skeleton)
    except (KeyError, ValueError, FileNotFoundError) as err:
        raise DataConfigError(f"datasets.{name}.skeleton = {skeleton!r}: {err}") from err
    count = raw.get("batch_count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise DataConfigError(f"datasets.{name}.batch_count must be an integer >= 0, got {count!r}")
    half_body = raw.get("half_body", True)
    if not isinstance(half_body, bool):
        raise DataConfigError(f"datasets.{name}.half_body must be true or false, got {half_body!r}")
    shift = raw.get("flip_test_shift")
    if shift is not None and not isinstance(shift, bool):
        raise DataConfigError(f"datasets.{name}.flip_test_shift must be true, false or null, got {shift!r}")
    return DatasetEntry(
        name=str(name),
        format=fmt,
        skeleton=str(skeleton),
        train=_parse_split(name, "train", raw["train"], root, fmt),
        val=_parse_split(name, "val", raw["val"], root, fmt),
        batch_count=count,
        codec=codec,
        metric=metric,
        half_body=half_body,
        flip_test_shift=shift,
        metric_options=dict(metric_options),
    )


def parse_dataset_entries(
    datasets: Any,
    root: str | os.PathLike | None,
    mode: str = "fixed",
    batch_size: int | None = None,
    skeleton_dirs: Any = None,
) -> dict[str, DatasetEntry]:
    """Validate a whole mix: every entry, the mixing mode, and (fixed mode) ``sum(batch_count) == batch_size``.

    ``skeleton_dirs`` (``data.skeleton_dirs``): folders of user skeleton YAMLs, registered first.
    Returns the entries in mix order (the order of ``datasets``), which is also the dataset index order.
    """
    from multipose.skeletons.registry import register_skeleton_dirs_option

    register_skeleton_dirs_option(to_plain(skeleton_dirs), DataConfigError)
    datasets = to_plain(datasets)
    if not isinstance(datasets, Mapping) or not datasets:
        raise DataConfigError("data.datasets must be a non-empty mapping of dataset name -> entry")
    if mode not in MODES:
        raise DataConfigError(f"data.mode = {mode!r} is unknown; valid modes: {', '.join(MODES)}")
    root_s = None if root is None else str(root)
    entries = {str(name): parse_entry(str(name), raw, root_s) for name, raw in datasets.items()}
    if batch_size is None or isinstance(batch_size, bool) or int(batch_size) <= 0:
        raise DataConfigError(
            f"data.batch_size must be a positive integer (global batch), got {batch_size!r}"
        )
    if mode == "fixed":
        counts = {n: e.batch_count for n, e in entries.items()}
        total = sum(counts.values())
        if total != int(batch_size):
            raise DataConfigError(
                f"fixed mode: the batch_count entries {counts} sum to {total}, but data.batch_size is "
                f"{batch_size}; make data.batch_size equal to the sum or change the counts"
            )
    return entries
