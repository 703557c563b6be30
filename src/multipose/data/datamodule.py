"""The LightningDataModule: data-mix config -> per-dataset readers/transforms/codecs -> mixed training batches
and one validation loader per dataset.

Construction validates the whole mix (formats, skeletons, codecs, metrics, batch counts, and - unless the
synthetic world still has to be generated - that every annotation file exists) before anything is read.
``skeletons``, ``codecs``, ``kmax`` and ``dataset_names`` are available right after construction, so a model
can be built before ``setup()``.

Training batches
    ``train_dataloader()`` uses :class:`~multipose.data.streams.MixedBatchSampler` as the DataLoader's
    ``batch_sampler`` (it runs in the main process; workers only load ``(dataset_idx, sample_idx, seed)``).
    Under DDP every rank takes its slice of each global batch, with rank and world size read from the
    attached trainer. Lightning must therefore not replace the sampler: run with
    ``Trainer(use_distributed_sampler=False)`` (``conf/trainer/*.yaml`` set it); a distributed run without it
    raises an error saying so. ``batch_size`` is the GLOBAL batch (summed over ranks).

Stream position and checkpoints
    The DataModule counts the training batches that reach the model (``on_before_batch_transfer`` while the
    trainer is training) - not the batches the DataLoader has prefetched - and every new epoch's sampler
    iteration starts from that count. ``state_dict()`` stores it, Lightning writes it into checkpoints and
    calls ``load_state_dict()`` on resume, so a resumed run continues the exact batch sequence. To set the
    position by hand (e.g. from a step count), call :meth:`MultiPoseDataModule.set_train_position`.

Validation
    ``val_dataloader()`` returns one loader per dataset, in mix order (dataloader index == dataset index),
    with the deterministic validation transform, over GT boxes (the same samples mmpose validates on, see
    :func:`multipose.data.formats.sample_instances`) or, when the entry's ``val.det_file`` is set, over
    detections with ``score >= det_score_thr`` and ``category_id`` in ``det_category_ids``. Under DDP
    each rank gets an interleaved shard **without padding** (no duplicated samples, ranks may differ by one
    sample); evaluators gather and merge by ``ann_id``. ``val_batch_size`` is per process.
    ``val_instances(name)`` are all ground-truth records of the validation file (what evaluators score),
    ``val_images(name)`` every image entry of it (:class:`~multipose.data.records.ImageRecord`, images
    without annotations included; CrowdPose's ``crowdIndex`` in ``extra``).

Bad input
    ``check_images`` (``header`` | ``decode`` | ``off``) runs a cached pre-flight check of every image a
    split uses (:mod:`multipose.data.image_check`) when the split is read; ``on_bad_image`` (``error`` |
    ``skip``) stops with the list of bad files or leaves their annotations out of training AND evaluation
    (listed in the log; :meth:`MultiPoseDataModule.skipped_images_metrics` is what goes into
    ``metrics.json``). ``invalid_boxes`` (``skip`` | ``error``) is the policy for annotations whose box has no
    area in the image (mmpose drops them: ``skip`` keeps them as ground truth only, with the count logged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from multipose.data.collate import collate_samples
from multipose.data.config import DataConfigError, DatasetEntry, parse_dataset_entries, to_plain
from multipose.data.dataset import ImageReadError, MixedDataset, TopDownDataset
from multipose.data.formats._common import INVALID_BOX_POLICIES
from multipose.data.image_check import BAD_IMAGE_POLICIES, CHECK_MODES, check_image_files
from multipose.data.records import ImageRecord, image_records
from multipose.data.streams import MODES, MixedBatchSampler

__all__ = ["MultiPoseDataModule", "filter_train_instances", "read_split"]

log = logging.getLogger(__name__)


def _single_threaded_opencv() -> None:
    """Switch OpenCV's own thread pool off in the main process BEFORE DataLoader workers are forked.

    The workers are the parallelism; OpenCV threads inside each of them only oversubscribe the CPU. Doing it
    in the worker instead (``worker_init_fn``) can deadlock: a forked child that calls
    ``cv2.setNumThreads`` tries to wind down the parent's thread pool, which does not exist in the child.
    (mmcv makes the same call for the same reason.)
    """
    import cv2

    cv2.setNumThreads(0)


def _pair(value: Any, what: str) -> tuple[int, int]:
    v = to_plain(value)
    try:
        h, w = (int(x) for x in v)
    except (TypeError, ValueError):
        raise DataConfigError(f"data.{what} must be [H, W] (two integers), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise DataConfigError(f"data.{what} must be positive, got {value!r}")
    return h, w


# ---------------------------------------------------------------------------------------------- reading


def read_split(
    entry: DatasetEntry,
    split: str,
    skeleton: Any,
    return_images: bool | str = False,
    invalid_boxes: str = "skip",
) -> Any:
    """All records of one split of one dataset (GT annotations, crowd included), via the format reader.

    With ``return_images=True`` returns ``(records, {image_id: image_path})`` (needed for detections),
    with ``"records"`` ``(records, {image_id: ImageRecord})``. Image files are not checked here (the
    DataModule's pre-flight does that).
    """
    from multipose.data.formats import get_reader

    cfg = getattr(entry, split)
    kwargs: dict[str, Any] = {"check_images": False}
    if entry.format in ("coco", "coco_wholebody"):
        kwargs["invalid_boxes"] = invalid_boxes
    if getattr(cfg, "head_boxes", None):
        kwargs["head_boxes"] = cfg.head_boxes  # MPII official mpii_gt_val.mat
    if entry.format == "interhand":
        kwargs.update(camera_file=cfg.camera_file, joint_file=cfg.joint_file)
    reader = get_reader(entry.format)
    want = return_images
    if entry.format == "mpii" and return_images == "records":
        want = True  # the MPII reader returns paths; wrapped below
    out = reader(
        cfg.ann_file, cfg.img_dir, skeleton=skeleton, dataset=entry.name, return_images=want, **kwargs
    )
    if return_images == "records" and want is True:
        return out[0], image_records(out[1])
    return out


def read_val_detections(
    entry: DatasetEntry,
    skeleton: Any,
    img_index: Mapping[int, str | ImageRecord],
    invalid_boxes: str = "skip",
) -> list[Any]:
    """Detections of ``entry.val.det_file`` with score >= ``det_score_thr`` and category in
    ``det_category_ids``; ``img_index`` maps image id -> image path or record (from the validation file)."""
    from multipose.data.formats import read_detections

    cfg = entry.val
    return read_detections(
        cfg.det_file,
        img_index,
        dataset=entry.name,
        skeleton=skeleton,
        score_thr=cfg.det_score_thr,
        category_ids=cfg.det_category_ids,
        invalid_boxes=invalid_boxes,
    )


def filter_train_instances(
    instances: Sequence[Any], name: str, source: str, split: str = "train"
) -> list[Any]:
    """Top-down samples of a split (:func:`multipose.data.formats.sample_instances`; counts logged).

    Raises ``ValueError`` naming ``source`` if nothing is left.
    """
    from multipose.data.formats import drop_reason, sample_instances

    kept = sample_instances(instances, log=log, dataset=name, split=split)
    if not kept:
        reasons: dict[str, int] = {}
        for inst in instances:
            r = drop_reason(inst)
            reasons[r] = reasons.get(r, 0) + 1
        raise ValueError(
            f"dataset {name!r}: no usable {split} instance in {source} ({len(instances)} read; dropped: {reasons}). "
            "Check the annotation file."
        )
    return kept


class ShardSampler(DistributedSampler):
    """Deterministic, unpadded, unshuffled shard ``range(n)[rank::world_size]`` for validation under DDP.

    Subclasses ``DistributedSampler`` only so Lightning leaves it alone; unlike it, no index is repeated.
    """

    def __init__(self, size: int, rank: int, world_size: int):
        self.size, self.rank, self.num_replicas = int(size), int(rank), int(world_size)
        self.epoch = 0
        self.shuffle = False
        self.drop_last = False
        self.indices = list(range(self.rank, self.size, self.num_replicas))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ---------------------------------------------------------------------------------------------- module


AUGMENTATION_KEYS = {
    "flip_prob",
    "half_body_prob",
    "num_joints_half_body",
    "scale_factor",
    "rot_factor",
    "rot_prob",
    "padding",
    "center_shift_prob",
    "center_shift_factor",
}


class MultiPoseDataModule(L.LightningDataModule):
    """Multi-dataset top-down pose data (see the module docstring).

    Args:
        datasets: mix config, dataset name -> entry dict (see :mod:`multipose.data.config`); order = mix order.
        root: folder that relative paths are resolved against.
        input_size, heatmap_size: ``(H, W)`` of the input crop and of the target heatmaps.
        batch_size: GLOBAL training batch size (sum over ranks); fixed mode: must equal the sum of batch_count.
        mode: ``fixed`` (per-dataset counts per batch) or ``proportional`` (ViTPose++ concatenation).
        num_workers: DataLoader workers per process.
        seed: seed of the training stream (all augmentation seeds derive from it).
        synthetic: world config (``{preset, seed, ...}``); when set, ``prepare_data()`` generates the
            synthetic world into ``root`` if it is not there yet.
        val_batch_size: validation batch size per process (default: per-rank training batch size).
        steps_per_epoch: batches per Lightning epoch (default: one pass over all training instances).
        sigma: Gaussian sigma of the targets, in heatmap pixels.
        pin_memory, persistent_workers: passed to the DataLoaders (persistent only with workers).
        photometric: photometric augmentation of ``TopDownTransform`` (True: its defaults, False: none).
        augmentation: geometric augmentation of ``TopDownTransform`` (``flip_prob``, ``half_body_prob``,
            ``num_joints_half_body``, ``scale_factor``, ``rot_factor``, ``rot_prob``, ``padding``); defaults are
            ViTPose's. ``half_body_prob`` applies only to datasets whose entry has ``half_body: true``.
            ``center_shift_prob`` / ``center_shift_factor``: random box-centre shift (off unless set).
        skeleton_dirs: folders of user skeleton YAMLs, registered before the entries are validated.
        check_images: pre-flight image check, ``header`` | ``decode`` | ``off`` (see "Bad input" above).
        on_bad_image: ``error`` (stop at start-up with the list) | ``skip`` (leave them out, listed).
        invalid_boxes: ``skip`` (as mmpose; counted) | ``error`` for annotations whose box has no area.
        image_check_cache: folder for the image-check cache; ``None``: ``<root>/.multipose_cache``.
        prompt: pose-prompt settings (:class:`multipose.data.prompts.PromptSettings`); every sample then carries
            ``prompt_*`` tensors and the model gets prompt tokens (:meth:`prompt_layout`).
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        root: str | os.PathLike | None = None,
        input_size: Sequence[int] = (256, 192),
        heatmap_size: Sequence[int] = (64, 48),
        batch_size: int = 32,
        mode: str = "fixed",
        num_workers: int = 0,
        seed: int = 0,
        synthetic: Mapping[str, Any] | None = None,
        val_batch_size: int | None = None,
        steps_per_epoch: int | None = None,
        sigma: float = 2.0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        photometric: bool | Mapping[str, Any] = True,
        augmentation: Mapping[str, Any] | None = None,
        skeleton_dirs: Sequence[str] | None = None,
        check_images: str = "header",
        on_bad_image: str = "error",
        invalid_boxes: str = "skip",
        image_check_cache: str | os.PathLike | None = None,
        prompt: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        from multipose.data.codecs import build_codec
        from multipose.skeletons import get_skeleton

        self.root = None if root is None else os.path.expanduser(str(root))
        self.input_size = _pair(input_size, "input_size")
        self.heatmap_size = _pair(heatmap_size, "heatmap_size")
        if mode not in MODES:
            raise DataConfigError(f"data.mode = {mode!r} is unknown; valid modes: {', '.join(MODES)}")
        self.mode = mode
        self.batch_size = int(batch_size)
        self.entries: dict[str, DatasetEntry] = parse_dataset_entries(
            datasets, self.root, mode, self.batch_size, skeleton_dirs=skeleton_dirs
        )
        self.synthetic = to_plain(synthetic)
        if self.synthetic is not None and not isinstance(self.synthetic, Mapping):
            raise DataConfigError(
                f"data.synthetic must be a mapping (world config) or null, got {synthetic!r}"
            )
        if self.synthetic is None:
            for entry in self.entries.values():
                entry.check_files()
        for what, v in (("num_workers", num_workers), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise DataConfigError(f"data.{what} must be an integer >= 0, got {v!r}")
        if val_batch_size is not None and int(val_batch_size) <= 0:
            raise DataConfigError(f"data.val_batch_size must be positive, got {val_batch_size!r}")
        if steps_per_epoch is not None and int(steps_per_epoch) <= 0:
            raise DataConfigError(f"data.steps_per_epoch must be positive or null, got {steps_per_epoch!r}")
        if float(sigma) <= 0:
            raise DataConfigError(f"data.sigma must be positive, got {sigma!r}")
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.val_batch_size = None if val_batch_size is None else int(val_batch_size)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.sigma = float(sigma)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.photometric = to_plain(photometric)
        self.augmentation = dict(to_plain(augmentation) or {})
        unknown = sorted(set(self.augmentation) - AUGMENTATION_KEYS)
        if unknown:
            raise DataConfigError(
                f"data.augmentation has unknown key(s) {unknown}; valid keys: {sorted(AUGMENTATION_KEYS)}"
            )

        for key, value, allowed in (
            ("check_images", check_images, CHECK_MODES),
            ("on_bad_image", on_bad_image, BAD_IMAGE_POLICIES),
            ("invalid_boxes", invalid_boxes, INVALID_BOX_POLICIES),
        ):
            if value not in allowed:
                raise DataConfigError(
                    f"data.{key} = {value!r} is unknown; valid values: {', '.join(allowed)}"
                )
        self.check_images = str(check_images)
        self.on_bad_image = str(on_bad_image)
        self.invalid_boxes = str(invalid_boxes)
        if image_check_cache is not None:
            self.image_check_cache: str | None = os.path.expanduser(str(image_check_cache))
        else:
            self.image_check_cache = (
                None if self.root is None else os.path.join(self.root, ".multipose_cache")
            )
        #: images left out under on_bad_image=skip: dicts with dataset, split, path, reason
        self.skipped_images: list[dict[str, str]] = []

        self.dataset_names: list[str] = list(self.entries)
        self.skeletons = {n: get_skeleton(e.skeleton) for n, e in self.entries.items()}
        self.kmax = max(s.num_keypoints for s in self.skeletons.values())
        from multipose.data.prompts import PromptSettings

        self.prompt = PromptSettings.from_config(to_plain(prompt))
        try:
            self.codecs = {
                n: build_codec(e.codec, self.input_size, self.heatmap_size, self.sigma)
                for n, e in self.entries.items()
            }
        except ValueError as err:
            raise DataConfigError(f"data.input_size / heatmap_size / sigma: {err}") from err

        self.train_datasets: list[TopDownDataset] = []
        self.val_datasets: list[TopDownDataset] = []
        self._val_instances: dict[str, list[Any]] = {}
        self._val_images: dict[str, dict[int, ImageRecord]] = {}
        self._val_samples: dict[str, list[Any]] = {}
        self._train_sampler: MixedBatchSampler | None = None
        self._consumed = 0  # global index of the next training batch that will reach the model

    # ------------------------------------------------------------------ accessors

    def dataset_entry(self, name: str) -> DatasetEntry:
        if name not in self.entries:
            raise KeyError(f"unknown dataset {name!r}; the mix has {self.dataset_names}")
        return self.entries[name]

    def describe(self) -> dict[str, Any]:
        """The mix as the model side needs it, in plain containers (``multipose.inference.MixSpec.from_dict``)."""
        return {
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
            "sigma": self.sigma,
            "datasets": {
                n: {
                    "skeleton": str(e.skeleton),
                    "codec": e.codec,
                    "metric": e.metric,
                    "use_udp": e.use_udp,
                    "metric_options": dict(e.metric_options),
                }
                for n, e in self.entries.items()
            },
        }

    def val_instances(self, name: str) -> list[Any]:
        """All GT records of ``name``'s validation annotation file (crowd included): what evaluators score."""
        if name not in self._val_instances:
            self._load_val(name)
        return self._val_instances[name]

    def val_image_ids(self, name: str) -> dict[int, dict[str, Any]]:
        """Every image of ``name``'s validation annotation file, annotated or not, as ``{image_id: extra image
        fields}`` (CrowdPose's ``crowdIndex``): COCO AP lists them all so predictions on images without people
        count as false positives."""
        return {i: dict(rec.extra) for i, rec in sorted(self.val_images(name).items())}

    def val_images(self, name: str) -> dict[int, ImageRecord]:
        """Every image entry of ``name``'s validation file, ``{image_id: ImageRecord}`` (images without
        annotations included, images left out under ``on_bad_image=skip`` excluded)."""
        if name not in self._val_images:
            self._load_val(name)
        return self._val_images[name]

    def skipped_images_summary(self) -> dict[str, Any]:
        """Images left out under ``on_bad_image=skip``:
        ``{"count": n, "files": [{"dataset", "split", "path", "reason"}, ...]}``."""
        return {"count": len(self.skipped_images), "files": [dict(f) for f in self.skipped_images]}

    def skipped_images_metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` entries for images left out under ``on_bad_image=skip``:
        ``data/skipped_images`` (count) and ``data/skipped_image_files`` (``"<dataset> <split>: <path>:
        <reason>"`` strings, a list); empty when nothing was skipped."""
        if not self.skipped_images:
            return {}
        return {
            "data/skipped_images": float(len(self.skipped_images)),
            "data/skipped_image_files": [
                f"{f['dataset']} {f['split']}: {f['path']}: {f['reason']}" for f in self.skipped_images
            ],
        }

    def _dist(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    # ------------------------------------------------------------------ building

    def _transform(self, name: str, train: bool):
        from multipose.data.transforms import TopDownTransform

        entry = self.entries[name]
        aug = {"half_body_prob": 0.3, **self.augmentation}
        if not entry.half_body:
            aug["half_body_prob"] = 0.0
        return TopDownTransform(
            self.input_size,
            self.skeletons[name],
            train=train,
            use_udp=entry.use_udp,
            photometric=self.photometric if train else False,
            **aug,
        )

    def prompt_layout(self) -> dict[str, Any] | None:
        """``model_config["prompt"]`` of a model trained on this mix with ``data.prompt`` (None without)."""
        if self.prompt is None:
            return None
        from multipose.models.prompt_tokens import prompt_model_config

        names = self.prompt.skeleton_names([s.name for s in self.skeletons.values()])
        return prompt_model_config(names, image_mask=self.prompt.image_mask)

    def _dataset(self, name: str, instances: Sequence[Any], train: bool) -> TopDownDataset:
        ds = self._plain_dataset(name, instances, train)
        if self.prompt is None:
            return ds
        from multipose.data.prompts import PromptedDataset, PromptMaker
        from multipose.skeletons import get_skeleton

        layout = self.prompt_layout()
        p = self.prompt.max_tokens or max(get_skeleton(s).num_keypoints for s in layout["skeletons"])
        maker = PromptMaker(self.prompt, self.skeletons[name], name, layout, self.input_size, p, train)
        return PromptedDataset(ds, maker)  # type: ignore[return-value]

    def _plain_dataset(self, name: str, instances: Sequence[Any], train: bool) -> TopDownDataset:
        return TopDownDataset(
            instances,
            self.skeletons[name],
            self._transform(name, train),
            self.codecs[name],
            dataset_idx=self.dataset_names.index(name),
            kmax=self.kmax,
            name=f"{name} ({'train' if train else 'val'})",
        )

    def prepare_data(self) -> None:
        """Generate the synthetic world into ``root`` when ``synthetic`` is configured (no-op if present)."""
        if self.synthetic is None:
            return
        if self.root is None:
            raise DataConfigError(
                "data.synthetic is set but data.root is null; give the folder for the world"
            )
        import time

        from multipose.data.synthetic import ensure_world, world_is_current

        opts = dict(self.synthetic)
        if world_is_current(self.root, opts.get("config", opts.get("preset")), opts.get("seed", 0)):
            return
        log.info("Generating the synthetic world %s into %s ...", opts, self.root)
        start = time.perf_counter()
        ensure_world(self.root, **opts)
        log.info("Synthetic world ready in %.1f s", time.perf_counter() - start)

    def _bad_images(self, name: str, split: str, paths: set[str]) -> set[str]:
        """Pre-flight check of ``paths``: raises under ``on_bad_image=error``, else returns the bad ones
        (recorded in ``skipped_images`` and logged)."""
        bad = check_image_files(
            paths, self.check_images, self.image_check_cache, desc=f"{name} {split}: checking images"
        )
        if not bad:
            return set()
        listing = [f"{p}: {r}" for p, r in sorted(bad.items())]
        if self.on_bad_image == "error":
            shown = "\n  ".join(listing[:10]) + (
                f"\n  ... and {len(listing) - 10} more" if len(listing) > 10 else ""
            )
            raise ImageReadError(
                f"dataset {name!r} ({split}): {len(bad)} of {len(paths)} image files are missing or corrupt "
                f"(data.check_images={self.check_images}):\n  {shown}\nRe-download or re-extract them, fix the "
                "dataset's img_dir, or set data.on_bad_image=skip to leave their annotations out (they are "
                "listed in the log and in metrics.json)."
            )
        log.warning(
            "%s %s: leaving out %d of %d images and their annotations (data.on_bad_image=skip):\n  %s",
            name,
            split,
            len(bad),
            len(paths),
            "\n  ".join(listing),
        )
        self.skipped_images.extend(
            {"dataset": name, "split": split, "path": p, "reason": r} for p, r in sorted(bad.items())
        )
        return set(bad)

    def _load_val(self, name: str) -> None:
        """Read the validation records, image entries and samples (GT boxes or detections) of ``name``."""
        entry = self.entries[name]
        entry.check_files(("val",))
        records, images = read_split(
            entry, "val", self.skeletons[name], return_images="records", invalid_boxes=self.invalid_boxes
        )
        if entry.val.det_file is not None:
            samples = read_val_detections(entry, self.skeletons[name], images, self.invalid_boxes)
            source = (
                f"{len(samples)} detections (score >= {entry.val.det_score_thr:g}) from {entry.val.det_file}"
            )
        else:
            samples = (
                filter_train_instances(records, name, entry.val.ann_file, split="val") if records else []
            )
            source = f"{len(samples)} GT boxes ({len(records)} records incl. crowd)"
        bad = self._bad_images(name, "val", {r.image_path for r in records} | {s.image_path for s in samples})
        if bad:
            records = [r for r in records if r.image_path not in bad]
            samples = [s for s in samples if s.image_path not in bad]
            images = {i: im for i, im in images.items() if im.path not in bad}
        log.info("%s val: %s", name, source)
        self._val_instances[name] = records
        self._val_images[name] = images
        self._val_samples[name] = samples

    def setup(self, stage: str | None = None) -> None:
        """Read the annotation files, check the images and build the datasets (idempotent).

        ``fit`` builds training and validation sets, ``validate``/``test`` only validation sets.
        """
        if self.synthetic is not None:
            for entry in self.entries.values():
                entry.check_files()
        if stage in (None, "fit") and not self.train_datasets:
            train = []
            for name, entry in self.entries.items():
                if self.mode == "fixed" and entry.batch_count == 0:
                    log.info("%s: batch_count 0, not read for training", name)
                    instances: list[Any] = []
                else:
                    records = read_split(
                        entry, "train", self.skeletons[name], invalid_boxes=self.invalid_boxes
                    )
                    instances = filter_train_instances(records, name, entry.train.ann_file)
                    bad = self._bad_images(name, "train", {i.image_path for i in instances})
                    if bad:
                        instances = [i for i in instances if i.image_path not in bad]
                        if not instances:
                            raise ValueError(f"dataset {name!r}: every training image was left out as bad")
                train.append(instances)
            self.train_datasets = [
                self._dataset(n, inst, train=True) if inst else None  # type: ignore[misc]
                for n, inst in zip(self.dataset_names, train)
            ]
        if not self.val_datasets:
            val = []
            for name, entry in self.entries.items():
                if name not in self._val_samples:
                    self._load_val(name)
                samples = self._val_samples[name]
                if not samples:
                    raise ValueError(
                        f"dataset {name!r}: no validation sample in "
                        f"{entry.val.det_file or entry.val.ann_file}; check the file (and det_score_thr)"
                    )
                val.append(self._dataset(name, samples, train=False))
            self.val_datasets = val

    # ------------------------------------------------------------------ loaders

    def _loader_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "collate_fn": collate_samples,
        }
        if self.num_workers > 0:
            kw["persistent_workers"] = self.persistent_workers
            _single_threaded_opencv()
        return kw

    def _check_distributed_sampler_flag(self, world_size: int) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is None or world_size <= 1:
            return
        connector = getattr(trainer, "_accelerator_connector", None)
        if getattr(connector, "use_distributed_sampler", False):
            raise DataConfigError(
                "MultiPoseDataModule shards every global batch across ranks itself; create the Trainer with "
                "use_distributed_sampler=False (trainer.use_distributed_sampler=false in the Hydra config)"
            )

    @property
    def train_sampler(self) -> MixedBatchSampler:
        if self._train_sampler is None:
            raise RuntimeError("call setup('fit') and train_dataloader() first")
        return self._train_sampler

    def build_train_sampler(self, rank: int = 0, world_size: int = 1) -> MixedBatchSampler:
        """The mixed-batch sampler over the training sets (after ``setup('fit')``)."""
        if not self.train_datasets:
            raise RuntimeError("no training datasets: call setup('fit') first")
        if self.batch_size % world_size:
            raise DataConfigError(
                f"data.batch_size={self.batch_size} (global) is not divisible by the world size {world_size}; "
                "change data.batch_size (and the batch_count entries) or the number of devices"
            )
        sizes = [len(ds) if ds is not None else 0 for ds in self.train_datasets]
        return MixedBatchSampler(
            sizes,
            [e.batch_count for e in self.entries.values()] if self.mode == "fixed" else None,
            mode=self.mode,
            batch_size=self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            start_batch=self._stream_position(),
            num_batches=self.steps_per_epoch,
            names=self.dataset_names,
            position_fn=self._stream_position,
        )

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self._dist()
        self._check_distributed_sampler_flag(world_size)
        if not self.train_datasets:
            self.setup("fit")
        self._train_sampler = self.build_train_sampler(rank, world_size)
        return DataLoader(
            MixedDataset(self._mixed_members()), batch_sampler=self._train_sampler, **self._loader_kwargs()
        )

    def _mixed_members(self) -> list[TopDownDataset]:
        """Training sets in mix order; a dataset with batch_count 0 gets a stand-in that is never indexed."""
        out = []
        for d, ds in enumerate(self.train_datasets):
            out.append(ds if ds is not None else _Unused(self.dataset_names[d], d, self.kmax))
        return out

    def val_dataloader(self) -> list[DataLoader]:
        if not self.val_datasets:
            self.setup("validate")
        rank, world_size = self._dist()
        per_rank = max(1, self.batch_size // max(1, world_size))
        bs = self.val_batch_size or per_rank
        loaders = []
        for ds in self.val_datasets:
            sampler = ShardSampler(len(ds), rank, world_size) if world_size > 1 else None
            loaders.append(
                DataLoader(
                    ds,
                    batch_size=bs,
                    shuffle=False,
                    sampler=sampler,
                    drop_last=False,
                    **self._loader_kwargs(),
                )
            )
        return loaders

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()

    # ------------------------------------------------------------------ stream position

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count training batches that actually reach the model (see "Stream position" above)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            self._consumed += 1
        return batch

    def _stream_position(self) -> int:
        """Where a new sampler iteration starts: batches consumed by the attached trainer, or - with no
        trainer (plain iteration over ``train_dataloader()``) - where the sampler itself stopped."""
        if getattr(self, "trainer", None) is None and self._train_sampler is not None:
            self._consumed = self._train_sampler.batch_index
        return self._consumed

    @property
    def train_position(self) -> int:
        """Global index of the next training batch that will reach the model."""
        return self._stream_position()

    def set_train_position(self, batch_index: int) -> None:
        """Continue the training stream at global batch ``batch_index`` (e.g. ``trainer.global_step *
        accumulate_grad_batches`` for a checkpoint written without DataModule state)."""
        if int(batch_index) < 0:
            raise ValueError(f"batch_index must be >= 0, got {batch_index}")
        self._consumed = int(batch_index)
        if self._train_sampler is not None:
            self._train_sampler.batch_index = self._consumed

    def state_dict(self) -> dict[str, Any]:
        self._stream_position()
        state: dict[str, Any] = {
            "batch_index": self._consumed,
            "seed": self.seed,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "dataset_names": list(self.dataset_names),
        }
        if self._train_sampler is not None:
            stream = self._train_sampler.state_dict()
            stream["batch_index"] = self._consumed
            state["stream"] = stream
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "batch_index" not in state_dict:
            raise KeyError("data-module state has no 'batch_index'; was it written by MultiPoseDataModule?")
        if state_dict.get("dataset_names", self.dataset_names) != self.dataset_names:
            log.warning(
                "resuming with a different data mix (saved %s, now %s): the batch sequence will differ",
                state_dict.get("dataset_names"),
                self.dataset_names,
            )
        if self._train_sampler is not None and "stream" in state_dict:
            self._train_sampler.load_state_dict(state_dict["stream"])  # warns on changed seed/counts/sizes
        elif state_dict.get("seed", self.seed) != self.seed:
            log.warning(
                "resuming with data.seed=%d but the checkpoint used %d: the batch sequence will differ",
                self.seed,
                state_dict["seed"],
            )
        self.set_train_position(int(state_dict["batch_index"]))


class _Unused(torch.utils.data.Dataset):
    """Placeholder for a dataset with batch_count 0 (never sampled, so never read)."""

    def __init__(self, name: str, dataset_idx: int, kmax: int):
        self.name, self.dataset_idx, self.kmax = name, dataset_idx, kmax

    def __len__(self) -> int:
        return 0

    def __getitem__(self, key: Any) -> Any:
        raise IndexError(f"{self.name} has batch_count 0 and is not used for training")
