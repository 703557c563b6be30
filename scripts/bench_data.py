"""Data-loading throughput of ONE worker process (what each DataLoader worker can deliver).

Generates the tiny synthetic world (COCO-sized 480x640 JPEGs by default) in a temporary folder (or uses
``--root``), then loads training samples exactly as a DataLoader worker does: JPEG from disk -> full training augmentation (flip, half-body,
scale/rotation, affine warp, photometric) -> UDP heatmap targets -> padding to the mix's ``kmax``.
OpenCV is limited to one thread, as in the DataModule's workers.

    python scripts/bench_data.py                      # 256x192 crops, 64x48 heatmaps, 17 and 133 keypoints
    python scripts/bench_data.py --samples 400 --input-size 256 192 --heatmap-size 64 48

Prints samples/s and the time split (read+decode / transform / encode+pad) per dataset.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def bench_dataset(ds, n: int, seed: int = 0) -> dict[str, float]:
    """Time ``n`` samples of a TopDownDataset, stage by stage (seconds per sample)."""
    from multipose.data.dataset import read_rgb

    rng = np.random.default_rng(seed)
    refs = [(int(rng.integers(len(ds))), int(rng.integers(2**63))) for _ in range(n)]
    for ref in refs[:5]:  # warm-up (imports, page cache, albumentations init)
        ds[ref]
    t_read = t_tf = t_enc = 0.0
    start = time.perf_counter()
    for i, seed_i in refs:
        inst = ds.instances[i]
        t0 = time.perf_counter()
        image = read_rgb(inst.image_path, inst.ann_id)
        t1 = time.perf_counter()
        out = ds.transform(image, inst, np.random.default_rng(seed_i))
        t2 = time.perf_counter()
        ds.codec.encode(out["keypoints"])
        t3 = time.perf_counter()
        t_read, t_tf, t_enc = t_read + t1 - t0, t_tf + t2 - t1, t_enc + t3 - t2
    staged = time.perf_counter() - start
    start = time.perf_counter()
    for ref in refs:  # the real path (includes padding and tensor conversion)
        ds[ref]
    total = time.perf_counter() - start
    return {
        "per_sample": total / n,
        "read": t_read / n,
        "transform": t_tf / n,
        "encode": t_enc / n,
        "staged": staged / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="existing synthetic world (default: generate one)"
    )
    parser.add_argument("--samples", type=int, default=300, help="samples timed per dataset")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    parser.add_argument("--heatmap-size", type=int, nargs=2, default=(64, 48), metavar=("H", "W"))
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=(480, 640),
        metavar=("H", "W"),
        help="size of the generated JPEGs (default: COCO-like 480x640)",
    )
    parser.add_argument("--codec", default="udp", choices=("udp", "msra"))
    parser.add_argument(
        "--no-photometric", action="store_true", help="ViTPose-exact: no colour/blur/noise ops"
    )
    args = parser.parse_args()

    from multipose.data.codecs import build_codec
    from multipose.data.config import parse_entry
    from multipose.data.datamodule import filter_train_instances, read_split
    from multipose.data.dataset import TopDownDataset
    from multipose.data.synthetic import WorldConfig, ensure_world, world_datasets
    from multipose.data.transforms import TopDownTransform
    from multipose.skeletons import get_skeleton

    cv2.setNumThreads(1)
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="multipose_bench_")
        root = Path(tmp.name) / "world"
        t0 = time.perf_counter()
        tiny = WorldConfig.preset("tiny")
        ensure_world(root, WorldConfig(image_size=tuple(args.image_size), datasets=tiny.datasets), seed=0)
        print(
            f"generated the tiny synthetic world ({args.image_size[0]}x{args.image_size[1]} JPEGs) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    wanted = {"syn_coco": 17, "syn_wholebody": 133}
    specs = {d.name: d for d in world_datasets("tiny") if d.name in wanted}
    kmax = max(wanted.values())
    rows = []
    for name, spec in specs.items():
        entry = parse_entry(name, {**spec.as_config(), "codec": args.codec}, str(root))
        skel = get_skeleton(entry.skeleton)
        instances = filter_train_instances(read_split(entry, "train", skel), name, entry.train.ann_file)
        transform = TopDownTransform(
            args.input_size, skel, train=True, use_udp=entry.use_udp, photometric=not args.no_photometric
        )
        codec = build_codec(args.codec, args.input_size, args.heatmap_size, 2.0)
        ds = TopDownDataset(instances, skel, transform, codec, dataset_idx=0, kmax=kmax, name=name)
        r = bench_dataset(ds, args.samples)
        rows.append((name, skel.num_keypoints, r))

    h, w = args.input_size
    hh, hw = args.heatmap_size
    print(
        f"\none worker process, {h}x{w} crops, {hh}x{hw} {args.codec.upper()} targets, padded to K={kmax}, "
        f"photometric={'off' if args.no_photometric else 'on'}, {args.samples} samples each"
    )
    print(f"{'dataset':<16}{'K':>5}{'samples/s':>11}{'ms/sample':>11}{'read':>8}{'augment':>9}{'encode':>8}")
    for name, k, r in rows:
        print(
            f"{name:<16}{k:>5}{1.0 / r['per_sample']:>11.1f}{1000 * r['per_sample']:>11.2f}"
            f"{1000 * r['read']:>8.2f}{1000 * r['transform']:>9.2f}{1000 * r['encode']:>8.2f}"
        )
    print("(read = JPEG read + decode, augment = TopDownTransform, encode = codec.encode; ms per sample)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
