"""Draw augmented samples of a data mix into a PNG grid, to check augmentation, targets and flips by eye.

Each tile is one input crop (un-normalised) with

* the ground-truth keypoints after augmentation (filled dots) and the skeleton links, coloured by side:
  **left = blue, right = orange, centre = green** (sides come from the keypoint names, so after a
  horizontal flip the person's left arm must still be blue);
* the keypoints decoded back from the encoded target heatmaps (magenta crosses), which must sit on the
  dots (a visible offset means the codec and the transform disagree);
* the dataset name, and ``flip`` when the sample was mirrored.

Command line (Hydra overrides are passed through; ``n``, ``split``, ``seed``, ``cols``, ``out``,
``conf_dir`` are the tool's own)::

    python -m multipose.data.browse data=synthetic n=16 split=train       # -> logs/browse/synthetic_train.png
    python -m multipose.data.browse data=full_mix paths.data_root=/datasets split=val

In Python: ``save_grid(render_grid(datamodule, n=16, split="train", seed=0), "browse.png")``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from multipose.inference.draw import COLOURS, draw_pose, keypoint_sides

__all__ = ["COLOURS", "keypoint_sides", "render_grid", "render_tile", "save_grid", "main"]

_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def _unnormalise(image: Any) -> np.ndarray:
    """``[3, H, W]`` ImageNet-normalised float -> ``uint8 [H, W, 3]`` RGB."""
    arr = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    return np.clip(arr * _STD + _MEAN, 0, 255).astype(np.uint8)


def render_tile(
    sample: dict[str, Any],
    out: dict[str, Any],
    skeleton: Any,
    codec: Any,
    title: str,
    zoom: int = 2,
) -> np.ndarray:
    """One tile: crop + GT keypoints/links (input-crop pixels from the transform output ``out``) + keypoints
    decoded from the sample's target heatmaps. Returns ``uint8 [H*zoom, W*zoom, 3]`` RGB."""
    crop = _unnormalise(sample["image"])
    h, w = crop.shape[:2]
    tile = cv2.resize(crop, (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)
    k = skeleton.num_keypoints
    kp = np.asarray(out["keypoints"], np.float32)[:k]
    vis = kp[:, 2] > 0

    def px(p: np.ndarray) -> tuple[int, int]:  # crop pixel centre -> tile pixel
        return int(round((p[0] + 0.5) * zoom - 0.5)), int(round((p[1] + 0.5) * zoom - 0.5))

    draw_pose(tile, kp, skeleton, vis, thickness=max(1, zoom // 2), radius=max(2, zoom + 1), to_pixel=px)

    heat = np.asarray(sample["heatmap"], np.float32)[:k][None]
    coords, _ = codec.decode(heat)
    weight = np.asarray(sample["heatmap_weight"], np.float32)[:k]
    arm = max(2, zoom + 1)
    for j in np.flatnonzero(weight > 0):
        x, y = px(np.asarray(coords[0, j]))
        cv2.line(tile, (x - arm, y - arm), (x + arm, y + arm), COLOURS["decoded"], 1, cv2.LINE_AA)
        cv2.line(tile, (x - arm, y + arm), (x + arm, y - arm), COLOURS["decoded"], 1, cv2.LINE_AA)

    label = title + (" flip" if out.get("flipped") else "")
    scale = 0.35 * max(1.0, zoom / 1.5)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(tile, (0, 0), (min(tile.shape[1] - 1, tw + 4), th + base + 3), COLOURS["banner"], -1)
    cv2.putText(tile, label, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, COLOURS["text"], 1, cv2.LINE_AA)
    return tile


def _round_robin(groups: Sequence[Sequence[Any]], n: int) -> list[Any]:
    """Take items alternately from each group until ``n`` items (or all groups are exhausted)."""
    out: list[Any] = []
    iters = [list(g) for g in groups]
    pos = 0
    while len(out) < n and any(pos < len(g) for g in iters):
        for g in iters:
            if pos < len(g) and len(out) < n:
                out.append(g[pos])
        pos += 1
    return out


def _pick_train(dm: Any, n: int, seed: int) -> list[tuple[int, int, int]]:
    from multipose.data.streams import MixedBatchSampler

    sizes = [len(ds) if ds is not None else 0 for ds in dm.train_datasets]
    counts = [e.batch_count for e in dm.entries.values()] if dm.mode == "fixed" else None
    sampler = MixedBatchSampler(
        sizes, counts, mode=dm.mode, batch_size=dm.batch_size, seed=seed, names=dm.dataset_names
    )
    per_dataset: list[list[tuple[int, int, int]]] = [[] for _ in sizes]
    t = 0
    while sum(len(g) for g in per_dataset) < n * len(sizes) and t < 1000:
        for ref in sampler.batch(t):
            per_dataset[ref[0]].append(ref)
        t += 1
    return _round_robin(per_dataset, n)


def render_grid(
    datamodule: Any,
    n: int = 16,
    split: str = "train",
    seed: int = 0,
    cols: int | None = None,
    zoom: int | None = None,
) -> np.ndarray:
    """A grid of ``n`` samples (datasets taken in turn) as ``uint8 [H, W, 3]`` RGB.

    ``split="train"`` draws augmented training samples from the mixed stream with ``seed``; ``split="val"``
    the deterministic validation crops. The datamodule must be set up for that split (this function calls
    ``setup`` when needed).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if split == "train":
        if not datamodule.train_datasets:
            datamodule.setup("fit")
        refs = _pick_train(datamodule, n, seed)
        datasets = datamodule.train_datasets
    else:
        if not datamodule.val_datasets:
            datamodule.setup("validate")
        datasets = datamodule.val_datasets
        refs = _round_robin([[(d, i, i) for i in range(len(ds))] for d, ds in enumerate(datasets)], n)
    h, w = datamodule.input_size
    zoom = zoom or max(1, int(round(192 / h)))
    tiles = []
    for d, i, s in refs:
        name = datamodule.dataset_names[d]
        sample, out = datasets[d].load((i, s))
        tiles.append(
            render_tile(sample, out, datamodule.skeletons[name], datamodule.codecs[name], name, zoom)
        )
    cols = cols or int(math.ceil(math.sqrt(len(tiles))))
    rows = int(math.ceil(len(tiles) / cols))
    th, tw = tiles[0].shape[:2]
    gap = 2
    grid = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for j, tile in enumerate(tiles):
        r, c = divmod(j, cols)
        grid[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return grid


def save_grid(grid: np.ndarray, path: str | Path) -> Path:
    """Write an RGB grid as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}; check the extension (.png) and that the folder is writable")
    return path


def _default_conf_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "conf"


def build_datamodule_from_overrides(overrides: Sequence[str], conf_dir: str | Path | None = None) -> Any:
    """Compose ``conf/train.yaml`` with Hydra ``overrides`` and instantiate ``cfg.data``."""
    from hydra import compose, initialize_config_dir

    conf = Path(conf_dir) if conf_dir else _default_conf_dir()
    if not (conf / "train.yaml").is_file():
        raise FileNotFoundError(
            f"no Hydra config tree at {conf} (train.yaml missing); pass conf_dir=<path to conf/> "
            "or build the MultiPoseDataModule in Python and call render_grid()"
        )
    with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    return instantiate_data(cfg)


def instantiate_data(cfg: Any) -> Any:
    """The DataModule of ``cfg.data``, after the data config check (a user error comes out as itself, not as
    Hydra's InstantiationException with the message's repr)."""
    import hydra
    from hydra.errors import InstantiationException

    from multipose.config_validation import validate_data_config

    validate_data_config(cfg.data)
    try:
        return hydra.utils.instantiate(cfg.data, _recursive_=False)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise


def default_out(overrides: Sequence[str], split: str, conf_dir: str | Path | None = None) -> Path:
    """``<paths.log_dir>/browse/<data>_<split>.png`` (``logs/browse/...``), not the working directory."""
    from hydra import compose, initialize_config_dir

    conf = Path(conf_dir) if conf_dir else _default_conf_dir()
    with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    data = cfg.hydra.runtime.choices.get("data") or "data"
    return Path(str(cfg.paths.log_dir)) / "browse" / f"{data}_{split}.png"


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m multipose.data.browse [data=<mix>] [n=16] [split=train] [seed=0] [cols=N]
    [out=logs/browse/<data>_<split>.png] [conf_dir=conf] [other Hydra overrides]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = {"n": "16", "split": "train", "seed": "0", "cols": None, "out": None, "conf_dir": None}
    overrides = []
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"browse: arguments are key=value, got {arg!r} (see --help)")
        if key in opts:
            opts[key] = value
        else:
            overrides.append(arg)
    dm = build_datamodule_from_overrides(overrides, opts["conf_dir"])
    dm.prepare_data()
    out = opts["out"] or default_out(overrides, opts["split"], opts["conf_dir"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    grid = render_grid(
        dm,
        n=int(opts["n"]),
        split=opts["split"],
        seed=int(opts["seed"]),
        cols=int(opts["cols"]) if opts["cols"] else None,
    )
    path = save_grid(grid, out)
    print(f"wrote {path} ({grid.shape[1]}x{grid.shape[0]} px, {opts['n']} {opts['split']} samples)")
    return path


if __name__ == "__main__":
    from multipose.utils.cli import run_entry_point

    run_entry_point(main)
