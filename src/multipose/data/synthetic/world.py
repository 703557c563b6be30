"""The synthetic multi-skeleton world: five datasets, five skeletons, genuine file formats.

Layout written by :func:`generate_world` (paths relative to ``root``)::

    world.json                                  manifest: generator version, seed, config, counts
    <dataset>/images/{train,val}/<dataset>_<split>_<index>.jpg
    <dataset>/annotations/{train,val}.json      COCO / COCO-WholeBody / MPII (see writer.py)

Everything is a pure function of ``(config, seed)``: each image draws from its own
``numpy.random.Generator`` seeded by ``(seed, dataset, split, image index)``, so the files are
byte-identical for a seed. A world is generated into a temporary sibling folder and renamed into
place only when complete, so an interrupted run never leaves a half world behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from multipose.data.synthetic import writer
from multipose.data.synthetic.figures import (
    SPECIES,
    AnimalStyle,
    Figure,
    HumanStyle,
    sample_human,
    sample_quadruped,
)
from multipose.data.synthetic.render import (
    PARTS_PER_FIGURE,
    Domain,
    add_clutter,
    draw_figure,
    finish_image,
    random_colour,
    render_background,
)
from multipose.data.synthetic.views import ANIMAL_SKELETONS, HUMAN_SKELETONS, get_view, landmark_table, pick

__all__ = [
    "GENERATOR_VERSION",
    "DatasetSpec",
    "WorldConfig",
    "WorldDataset",
    "DOMAINS",
    "generate_world",
    "ensure_world",
    "world_datasets",
    "world_is_current",
    "compose_scene",
    "figure_count",
]

GENERATOR_VERSION = "1.0"
MANIFEST = "world.json"
FORMATS = ("coco", "coco_wholebody", "mpii")

# ----------------------------------------------------------------------------------------------
# Visual domains: palette, textures, blur, noise and JPEG quality differ per dataset.
# ----------------------------------------------------------------------------------------------

DOMAINS: dict[str, Domain] = {
    "street": Domain(
        "street",
        (("gradient", 0.2), ("noise", 0.3), ("blobs", 0.3), ("stripes", 0.1), ("room", 0.1)),
        bg_sat=(20, 160),
        bg_val=(60, 220),
        bg_hues=(0, 180),
        cloth_sat=(80, 255),
        cloth_val=(80, 240),
        blur_sigma=(0.0, 0.8),
        noise_std=(2.0, 6.0),
        jpeg_quality=(85, 95),
        clutter=(2, 6),
    ),
    "outdoor": Domain(
        "outdoor",
        (("noise", 0.5), ("blobs", 0.4), ("gradient", 0.1)),
        bg_sat=(30, 120),
        bg_val=(70, 200),
        bg_hues=(20, 100),
        cloth_sat=(30, 140),
        cloth_val=(60, 200),
        blur_sigma=(0.6, 1.3),
        noise_std=(4.0, 9.0),
        jpeg_quality=(60, 80),
        clutter=(3, 8),
    ),
    "indoor": Domain(
        "indoor",
        (("room", 0.6), ("stripes", 0.2), ("gradient", 0.2)),
        bg_sat=(40, 140),
        bg_val=(90, 230),
        bg_hues=(0, 30),
        cloth_sat=(60, 200),
        cloth_val=(60, 220),
        blur_sigma=(0.3, 0.9),
        noise_std=(1.0, 4.0),
        jpeg_quality=(88, 95),
        clutter=(0, 3),
    ),
    "studio": Domain(
        "studio",
        (("gradient", 0.6), ("noise", 0.4)),
        bg_sat=(10, 80),
        bg_val=(120, 240),
        bg_hues=(90, 140),
        cloth_sat=(80, 230),
        cloth_val=(70, 230),
        blur_sigma=(0.0, 0.4),
        noise_std=(0.0, 2.0),
        jpeg_quality=(92, 97),
        clutter=(0, 2),
    ),
    "nature": Domain(
        "nature",
        (("noise", 0.4), ("blobs", 0.4), ("gradient", 0.2)),
        bg_sat=(60, 200),
        bg_val=(50, 200),
        bg_hues=(25, 75),
        cloth_sat=(60, 200),
        cloth_val=(60, 220),
        blur_sigma=(0.2, 1.0),
        noise_std=(2.0, 6.0),
        jpeg_quality=(75, 92),
        clutter=(3, 9),
        fur=((15, 140, 120), (20, 90, 190), (0, 0, 60), (0, 0, 225), (12, 60, 150), (25, 170, 200)),
    ),
}


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic dataset: its skeleton view, file format, size (instances) and visual domain."""

    name: str
    skeleton: str
    format: str  # "coco" | "coco_wholebody" | "mpii"
    train_instances: int
    val_instances: int
    domain: str  # key of DOMAINS
    max_figures: int = 3

    @property
    def kind(self) -> str:
        return "quadruped" if self.skeleton in ANIMAL_SKELETONS else "human"


DEFAULT_DATASETS = (
    DatasetSpec("syn_coco", "coco", "coco", 2400, 200, "street"),
    DatasetSpec("syn_aic", "aic", "coco", 1600, 160, "outdoor"),
    DatasetSpec("syn_mpii", "mpii", "mpii", 800, 160, "indoor"),
    DatasetSpec("syn_wholebody", "coco_wholebody", "coco_wholebody", 1000, 160, "studio"),
    DatasetSpec("syn_ap10k", "ap10k", "coco", 600, 160, "nature", max_figures=2),
)


@dataclass(frozen=True)
class WorldConfig:
    """What to generate. ``image_size`` is ``(H, W)``; counts are annotated instances per split."""

    image_size: tuple[int, int] = (256, 256)
    datasets: tuple[DatasetSpec, ...] = DEFAULT_DATASETS
    back_view_prob: float = 0.2  # humans seen from behind (face hidden, left/right swapped on screen)

    @classmethod
    def preset(cls, name: str) -> WorldConfig:
        """``"default"`` (the training world) or ``"tiny"`` (a few images per dataset, for tests)."""
        if name == "default":
            return cls()
        if name == "tiny":
            return cls(
                datasets=tuple(
                    dataclasses.replace(d, train_instances=12, val_instances=8) for d in DEFAULT_DATASETS
                )
            )
        raise ValueError(f"unknown synthetic world preset {name!r}; choose 'default' or 'tiny'")

    def __post_init__(self) -> None:
        h, w = self.image_size
        if h < 64 or w < 64:
            raise ValueError(f"WorldConfig.image_size={self.image_size}: use at least 64x64 (H, W)")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"WorldConfig.datasets: duplicate dataset names in {names}")
        for d in self.datasets:
            if d.format not in FORMATS:
                raise ValueError(f"dataset {d.name!r}: format {d.format!r} is not one of {FORMATS}")
            if d.domain not in DOMAINS:
                raise ValueError(f"dataset {d.name!r}: domain {d.domain!r} is not one of {sorted(DOMAINS)}")
            if d.skeleton not in HUMAN_SKELETONS + ANIMAL_SKELETONS:
                raise ValueError(
                    f"dataset {d.name!r}: skeleton {d.skeleton!r} has no synthetic view; "
                    f"choose from {HUMAN_SKELETONS + ANIMAL_SKELETONS}"
                )
            if d.format == "mpii" and d.skeleton != "mpii":
                raise ValueError(f"dataset {d.name!r}: the mpii format needs the mpii skeleton")
            if d.format == "coco_wholebody" and d.skeleton != "coco_wholebody":
                raise ValueError(
                    f"dataset {d.name!r}: the coco_wholebody format needs the coco_wholebody skeleton"
                )
            if d.train_instances < 1 or d.val_instances < 1:
                raise ValueError(f"dataset {d.name!r}: instance counts must be >= 1")
            if not 1 <= d.max_figures <= 3:
                raise ValueError(f"dataset {d.name!r}: max_figures must be 1..3")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d


@dataclass(frozen=True)
class WorldDataset:
    """A dataset entry of the world, paths relative to the world root (POSIX separators)."""

    name: str
    format: str
    skeleton: str
    train_ann: str
    train_img_dir: str
    val_ann: str
    val_img_dir: str

    def as_config(self) -> dict[str, Any]:
        """The entry in the shape of a Hydra data-mix dataset entry (format, skeleton, train/val files)."""
        return {
            "format": self.format,
            "skeleton": self.skeleton,
            "train": {"ann_file": self.train_ann, "img_dir": self.train_img_dir},
            "val": {"ann_file": self.val_ann, "img_dir": self.val_img_dir},
        }


def _resolve(config: WorldConfig | str | None, preset: str | None = None) -> WorldConfig:
    if preset is not None:
        if config is not None:
            raise ValueError("give either `config` or `preset` for the synthetic world, not both")
        config = preset
    if config is None:
        return WorldConfig()
    if isinstance(config, str):
        return WorldConfig.preset(config)
    if not isinstance(config, WorldConfig):
        raise TypeError(f"config must be a WorldConfig, a preset name or None, got {type(config).__name__}")
    return config


def world_datasets(config: WorldConfig | str | None = None) -> list[WorldDataset]:
    """The dataset entries of a world (name, format, skeleton, ann files and image dirs per split)."""
    cfg = _resolve(config)
    return [
        WorldDataset(
            d.name,
            d.format,
            d.skeleton,
            f"{d.name}/annotations/train.json",
            f"{d.name}/images/train",
            f"{d.name}/annotations/val.json",
            f"{d.name}/images/val",
        )
        for d in cfg.datasets
    ]


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------


@dataclass
class SceneInstance:
    """One annotated figure of a rendered scene."""

    figure: Figure
    table: dict[str, tuple[float, float, int]]  # landmark -> (x, y, v)
    area: int  # visible pixels
    bbox: list[float]  # xywh tight box of the visible pixels


def _human_style(rng: np.random.Generator, dom: Domain) -> HumanStyle:
    skin = random_colour(rng, dom, hue=(5, 20), sat=(60, 150), val=(90, 235))
    hair = random_colour(rng, dom, hue=(5, 25), sat=(40, 200), val=(20, 170))
    shirt = random_colour(rng, dom)
    trousers = random_colour(rng, dom, val=(dom.cloth_val[0] * 0.6, dom.cloth_val[1] * 0.75))
    shoes = random_colour(rng, dom, sat=(0, 80), val=(20, 110))
    return HumanStyle(skin, hair, shirt, trousers, shoes, long_sleeves=bool(rng.uniform() < 0.5))


def _animal_style(rng: np.random.Generator, dom: Domain) -> AnimalStyle:
    base = dom.fur[int(rng.integers(len(dom.fur)))]
    h = base[0] + rng.uniform(-4, 4)
    s = float(np.clip(base[1] + rng.uniform(-30, 30), 0, 255))
    v = float(np.clip(base[2] + rng.uniform(-30, 30), 20, 250))
    fur = random_colour(rng, dom, hue=(h, h + 1e-3), sat=(s, s + 1e-3), val=(v, v + 1e-3))
    belly = random_colour(
        rng, dom, hue=(h, h + 1e-3), sat=(s * 0.5, s * 0.5 + 1e-3), val=(min(250, v * 1.2 + 20),) * 2
    )
    return AnimalStyle(fur, belly)


_SIZE_RANGES = {1: (0.62, 0.92), 2: (0.52, 0.8), 3: (0.45, 0.7)}  # largest figure side / image side


def _layout(rng: np.random.Generator, figs: list[Figure], size: tuple[int, int], kind: str) -> list[Figure]:
    """Place canonical figures: scale, rotation and position with moderate overlap and truncation."""
    h, w = size
    n = len(figs)
    placed: list[Figure] = []
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    lo_f, hi_f = _SIZE_RANGES[n]
    for fig in figs:
        rot_sd = 12.0 if kind == "human" else 6.0
        rot = math.radians(float(np.clip(rng.normal(0.0, rot_sd), -45.0, 45.0)))
        lo, hi = fig.extent(rot)
        span = float(max(hi - lo))
        target = rng.uniform(lo_f, hi_f) * min(h, w)
        best = None
        for attempt in range(30):
            s = target / span * (0.97 ** (attempt // 6))
            bw, bh = (hi - lo) * s
            slack = 0.1  # up to 10% of the figure may leave the image
            x_lo, x_hi = -lo[0] * s - slack * bw, w - hi[0] * s + slack * bw
            y_lo, y_hi = -lo[1] * s - slack * bh, h - hi[1] * s + slack * bh
            cx = rng.uniform(x_lo, x_hi) if x_hi > x_lo else (x_lo + x_hi) / 2
            cy = rng.uniform(y_lo, y_hi) if y_hi > y_lo else (y_lo + y_hi) / 2
            box = (lo * s + (cx, cy), hi * s + (cx, cy))
            worst = max((_overlap(box, b) for b in boxes), default=0.0)
            if best is None or worst < best[0]:
                best = (worst, s, cx, cy, box)
            if worst <= 0.4:
                break
        _, s, cx, cy, box = best
        boxes.append(box)
        placed.append(fig.place((cx, cy), s, rot))
    return placed


def _overlap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Intersection over the smaller box's area."""
    lo = np.maximum(a[0], b[0])
    hi = np.minimum(a[1], b[1])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    area = min(float(np.prod(a[1] - a[0])), float(np.prod(b[1] - b[0])))
    return inter / max(area, 1e-6)


def figure_count(rng: np.random.Generator, spec: DatasetSpec) -> int:
    """How many figures an image of ``spec`` shows (humans 1-3, animals 1-2, capped by ``max_figures``)."""
    counts = (1, 2, 3) if spec.kind == "human" else (1, 2)
    probs = np.array((0.4, 0.35, 0.25) if spec.kind == "human" else (0.7, 0.3))
    return max(1, min(int(rng.choice(counts, p=probs / probs.sum())), spec.max_figures))


def compose_scene(
    rng: np.random.Generator,
    spec: DatasetSpec,
    size: tuple[int, int],
    num_figures: int,
    back_view_prob: float = 0.2,
) -> tuple[np.ndarray, list[SceneInstance]]:
    """Render one image of ``spec``'s world with ``num_figures`` figures.

    Returns ``(uint8 [H, W, 3] RGB, instances back to front)``. The figures are re-sampled (up to 8
    times) while one of them shows fewer than 4 seen keypoints of the dataset's own skeleton, which
    keeps occlusion moderate; the least-occluded attempt is kept.
    """
    dom = DOMAINS[spec.domain]
    view = get_view(spec.skeleton)
    h, w = size
    best: tuple[int, np.ndarray, list[SceneInstance]] | None = None
    for _attempt in range(8):
        if spec.kind == "human":
            figs = [sample_human(rng, _human_style(rng, dom), back_view_prob) for _ in range(num_figures)]
        else:
            species = sorted(SPECIES)
            figs = [
                sample_quadruped(rng, _animal_style(rng, dom), species[int(rng.integers(len(species)))])
                for _ in range(num_figures)
            ]
        placed = _layout(rng, figs, size, spec.kind)
        lab = np.zeros((h, w), np.uint16)
        img = render_background(rng, dom, size)
        add_clutter(img, rng, dom)
        a = rng.uniform(0, 2 * math.pi)
        light = np.array([math.cos(a), math.sin(a)])
        for i, fig in enumerate(placed):
            draw_figure(img, lab, fig, i, light)
        instances = []
        # figure index + 1 per pixel (0: background); part values are i * PARTS_PER_FIGURE + 1..63
        owner = lab // PARTS_PER_FIGURE + (lab > 0)
        areas = np.bincount(owner.ravel(), minlength=len(placed) + 1)
        for i, fig in enumerate(placed):
            table = landmark_table(fig, i, lab)
            area = int(areas[i + 1])
            bbox = [0.0, 0.0, 0.0, 0.0]
            if area:
                m = owner == i + 1
                cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
                bbox = [
                    float(cols[0]),
                    float(rows[0]),
                    float(cols[-1] - cols[0] + 1),
                    float(rows[-1] - rows[0] + 1),
                ]
            instances.append(SceneInstance(fig, table, area, bbox))
        score = min(int((pick(s.table, view)[:, 2] == 2).sum()) for s in instances)
        if best is None or score > best[0]:
            best = (score, img, instances)
        if score >= 4:
            break
    assert best is not None
    _, img, instances = best
    return finish_image(img, rng, dom), instances


# ----------------------------------------------------------------------------------------------
# Annotation records
# ----------------------------------------------------------------------------------------------


def _gt_all(inst: SceneInstance, kind: str) -> dict[str, np.ndarray]:
    names = HUMAN_SKELETONS if kind == "human" else ANIMAL_SKELETONS
    return {n: pick(inst.table, get_view(n)) for n in names}


def _wholebody_valid(k: np.ndarray, fig: Figure) -> dict[str, bool]:
    """Which whole-body parts an annotator would label: feet when any foot point is in the image, a face
    when it faces the camera and most of it is seen, a hand when most of it is seen and it is not tiny."""
    foot, face, lh, rh = k[17:23], k[23:91], k[91:112], k[112:133]

    def hand_ok(hk: np.ndarray) -> bool:
        if hk[0, 2] == 0 or (hk[:, 2] == 2).sum() < 10:
            return False
        lab = hk[hk[:, 2] > 0, :2]
        return float(np.max(lab.max(0) - lab.min(0))) >= 8.0

    face_ok = fig.face_visible and (face[:, 2] == 2).sum() >= 34
    if face_ok:
        lab = face[face[:, 2] > 0, :2]
        face_ok = float(np.max(lab.max(0) - lab.min(0))) >= 10.0
    return {
        "foot": bool((foot[:, 2] > 0).any()),
        "face": bool(face_ok),
        "lefthand": hand_ok(lh),
        "righthand": hand_ok(rh),
    }


def _mpii_geometry(inst: SceneInstance) -> tuple[np.ndarray, list[float]]:
    """MPII centre (middle of the figure's landmark box, pixels) and head box ``[x1, y1, x2, y2]``."""
    pts = np.stack(list(inst.figure.landmarks.values()))
    centre = (pts.min(0) + pts.max(0)) / 2
    top, neck = inst.figure.landmarks["head_top"], inst.figure.landmarks["upper_neck"]
    mid = (top + neck) / 2
    half = float(np.linalg.norm(top - neck)) / 2
    return centre, [mid[0] - half, mid[1] - half, mid[0] + half, mid[1] + half]


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------


def _image_rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    key = [int(seed) & 0xFFFFFFFF, zlib.crc32(dataset.encode()), 0 if split == "train" else 1, index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _plan(seed: int, spec: DatasetSpec, split: str) -> list[int]:
    """Figures per image for one split, drawn from their own stream until the instance target is met
    (the last image is trimmed). Planning first makes every image independent of the others."""
    target = spec.train_instances if split == "train" else spec.val_instances
    rng = np.random.default_rng(
        np.random.SeedSequence(
            [int(seed) & 0xFFFFFFFF, zlib.crc32(spec.name.encode()), 0 if split == "train" else 1, 2**31]
        )
    )
    plan: list[int] = []
    done = 0
    while done < target:
        n = min(figure_count(rng, spec), target - done)
        plan.append(n)
        done += n
    return plan


@dataclass(frozen=True)
class _Task:
    """A chunk of images of one split, rendered by one worker."""

    root: str
    spec: DatasetSpec
    split: str
    cfg: WorldConfig
    seed: int
    start: int  # index of the first image
    counts: tuple[int, ...]  # figures per image


def _render_task(task: _Task) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Render and write the task's JPEGs; return ``(image record, [annotation records])`` per image.

    Annotation records carry ``id: 0`` (COCO) — ids are assigned in order when the split is assembled.
    """
    spec, cfg, split = task.spec, task.cfg, task.split
    img_dir = Path(task.root) / spec.name / "images" / split
    view = get_view(spec.skeleton)
    h, w = cfg.image_size
    dom = DOMAINS[spec.domain]
    species = ("person",) if spec.kind == "human" else tuple(sorted(SPECIES))
    out = []
    for offset, n in enumerate(task.counts):
        index = task.start + offset
        rng = _image_rng(task.seed, spec.name, split, index)
        img, insts = compose_scene(rng, spec, cfg.image_size, n, cfg.back_view_prob)
        fname = f"{spec.name}_{split}_{index:06d}.jpg"
        quality = int(rng.integers(dom.jpeg_quality[0], dom.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {img_dir / fname}")
        (img_dir / fname).write_bytes(buf.tobytes())
        image_id = index + 1
        records = []
        for inst in insts:
            gt = _gt_all(inst, spec.kind)
            k = pick(inst.table, view)
            if spec.format == "mpii":
                centre, headbox = _mpii_geometry(inst)
                records.append(writer.mpii_entry(fname, k, inst.figure.height_px, centre, headbox, gt))
                continue
            cat = species.index(inst.figure.category) + 1
            body = k[:17] if spec.format == "coco_wholebody" else k
            ann = writer.coco_annotation(0, image_id, cat, body, inst.bbox, inst.area, gt)
            if spec.format == "coco_wholebody":
                parts = writer.wholebody_parts(k, _wholebody_valid(k, inst.figure))
                parts.pop("keypoints")
                ann.update(parts)
            records.append(ann)
        out.append(({"id": image_id, "file_name": fname, "width": w, "height": h}, records))
    return out


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _auto_workers(total_images: int) -> int:
    if total_images < 400:  # process start-up would cost more than it saves
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def _generate(root: Path, cfg: WorldConfig, seed: int, workers: int | None) -> dict[str, dict[str, Any]]:
    """Render every split of every dataset into ``root`` and write the annotation files."""
    chunk = 48
    tasks: list[_Task] = []
    plans: dict[tuple[str, str], list[int]] = {}
    for spec in cfg.datasets:
        for split in ("train", "val"):
            plan = plans[(spec.name, split)] = _plan(seed, spec, split)
            (root / spec.name / "images" / split).mkdir(parents=True, exist_ok=True)
            for s in range(0, len(plan), chunk):
                tasks.append(_Task(str(root), spec, split, cfg, int(seed), s, tuple(plan[s : s + chunk])))
    n_workers = _auto_workers(sum(len(p) for p in plans.values())) if workers is None else int(workers)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for automatic), got {workers}")
    if n_workers == 1:
        results = [_render_task(t) for t in tasks]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            n_workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
        ) as ex:
            results = list(ex.map(_render_task, tasks))
    by_split: dict[tuple[str, str], list] = {}
    for task, res in zip(tasks, results):
        by_split.setdefault((task.spec.name, task.split), []).extend(res)
    counts: dict[str, dict[str, Any]] = {}
    for spec in cfg.datasets:
        counts[spec.name] = {"skeleton": spec.skeleton, "format": spec.format}
        species = ("person",) if spec.kind == "human" else tuple(sorted(SPECIES))
        for split in ("train", "val"):
            items = by_split[(spec.name, split)]
            anns = [a for _, recs in items for a in recs]
            ann_file = root / spec.name / "annotations" / f"{split}.json"
            if spec.format == "mpii":
                writer.dump_json(anns, ann_file)
            else:
                for i, a in enumerate(anns):
                    a["id"] = i + 1
                writer.dump_json(
                    {
                        "info": {
                            "description": f"multipose synthetic world: {spec.name} ({split})",
                            "version": GENERATOR_VERSION,
                        },
                        "images": [img for img, _ in items],
                        "annotations": anns,
                        "categories": writer.categories_for(spec.skeleton, species),
                    },
                    ann_file,
                )
            counts[spec.name][split] = {"images": len(items), "instances": len(anns)}
    return counts


def _manifest(cfg: WorldConfig, seed: int, counts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "generator": "multipose.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "config": cfg.to_dict(),
        "datasets": counts,
    }


def _staleness(root: Path, cfg: WorldConfig, seed: int) -> str | None:
    """Why the world at ``root`` does not match ``(cfg, seed)``, or None when it is current."""
    mf = root / MANIFEST
    if not mf.is_file():
        return f"no manifest {mf}"
    try:
        man = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return f"unreadable manifest {mf}: {e}"
    if man.get("version") != GENERATOR_VERSION:
        return f"generator version {man.get('version')!r} != {GENERATOR_VERSION!r}"
    if man.get("seed") != int(seed):
        return f"seed {man.get('seed')!r} != {seed}"
    if man.get("config") != json.loads(json.dumps(cfg.to_dict())):
        return "configuration differs"
    for d in world_datasets(cfg):
        for split, ann, img_dir in (
            ("train", d.train_ann, d.train_img_dir),
            ("val", d.val_ann, d.val_img_dir),
        ):
            if not (root / ann).is_file():
                return f"missing {root / ann}"
            want = man.get("datasets", {}).get(d.name, {}).get(split, {}).get("images")
            if want is None or not (root / img_dir).is_dir() or len(os.listdir(root / img_dir)) != want:
                return f"image folder {root / img_dir} does not hold the {want} images the manifest lists"
    return None


def world_is_current(root: str | os.PathLike, config: WorldConfig | str | None = None, seed: int = 0) -> bool:
    """Whether ``root`` holds a complete world generated for ``(config, seed)`` by this generator version."""
    return _staleness(Path(root), _resolve(config), seed) is None


def _clean_dead_partials(root: Path) -> None:
    """Remove temporary folders left by generations whose process is gone (killed runs)."""
    for p in [*root.parent.glob(f".{root.name}.partial-*"), *root.parent.glob(f".{root.name}.old-*")]:
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        alive = True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            pass
        if not alive or pid == os.getpid():
            shutil.rmtree(p, ignore_errors=True)


def generate_world(
    root: str | os.PathLike,
    config: WorldConfig | str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    preset: str | None = None,
) -> Path:
    """Generate the world into ``root`` (atomically) and return ``root`` as a ``Path``.

    ``workers``: processes rendering images (``None``: one per CPU core, up to 8, for worlds of more
    than a few hundred images). The output is byte-identical for any number of workers.
    ``config`` may be a :class:`WorldConfig`, a preset name, or ``None`` (default world); ``preset``
    is the same as passing the name as ``config`` (the data config writes ``synthetic: {preset, seed}``).

    ``root`` must not exist unless ``overwrite`` is set, in which case it must be a previous world
    (hold ``world.json``) or be empty — any other folder is refused rather than deleted.
    """
    cfg = _resolve(config, preset)
    root = Path(root).absolute()
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"{root} exists; pass overwrite=True (CLI: --overwrite) to replace it")
        if not root.is_dir() or (any(root.iterdir()) and not (root / MANIFEST).is_file()):
            raise FileExistsError(
                f"{root} exists and is not a synthetic world (no {MANIFEST}); refusing to replace it — "
                "choose an empty or new folder"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_dead_partials(root)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        counts = _generate(tmp, cfg, seed, workers)
        writer.dump_json(_manifest(cfg, seed, counts), tmp / MANIFEST)
        if root.exists():
            old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Inter-process lock next to ``root`` (several ranks may call ``ensure_world`` at once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_world(
    root: str | os.PathLike,
    config: WorldConfig | str | None = None,
    seed: int = 0,
    workers: int | None = None,
    preset: str | None = None,
) -> Path:
    """Generate the world at ``root`` unless a current one (same generator version, seed and config,
    complete files) is already there; returns ``root``. Safe to call from several processes.

    Arguments as for :func:`generate_world`."""
    cfg = _resolve(config, preset)
    root = Path(root).absolute()
    with _lock(root):
        if _staleness(root, cfg, seed) is None:
            return root
        return generate_world(root, cfg, seed, overwrite=True, workers=workers)
