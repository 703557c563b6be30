"""Share of labelled keypoints that get a training signal (target weight > 0), before and after issue 9 fix 3.

Draws training samples of every dataset of the synthetic world with the ``full_mix`` geometric augmentation
(ViTPose's: flip 0.5, half-body 0.3, scale 0.5, rotation 40 deg with p 0.6, plus the box-centre shift 0.3 /
0.16; no photometric ops) and the codec and affine ``full_mix`` gives the dataset's skeleton, and counts
labelled keypoints (``v > 0``):

* ``before``: the earlier rule, a keypoint outside the crop lost its label (``v = 0``, weight 0);
* ``mmpose``: the label is kept and the codec zeroes the weight only when the Gaussian window leaves the
  heatmap (mmpose 0.x's rule, the default now);
* ``window``: as ``mmpose`` but without mmpose's one-pixel ring (``edge_rule="window"``).

    python scripts/supervised_share.py                         # tiny world, generated in a temp folder
    python scripts/supervised_share.py --preset default --samples 3000
    python scripts/supervised_share.py --root data/synthetic   # an existing world

Images are not decoded: the geometry does not depend on pixel values, so a black image of the right size
stands in for each one.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

FULL_MIX_AUGMENTATION = {"center_shift_prob": 0.3, "center_shift_factor": 0.16}
# conf/data/full_mix.yaml's codec (and affine) per skeleton: UDP for COCO and MPII, MSRA for the rest
FULL_MIX_CODECS = {"coco": "udp", "mpii": "udp", "aic": "msra", "ap10k": "msra", "coco_wholebody": "msra"}


def supervised_share(entry, skeleton, instances, image_sizes, input_size, heatmap_size, samples, seed=0):
    """Counts of labelled keypoints and of those supervised under each rule, over ``samples`` draws."""
    from multipose.data.codecs import build_codec
    from multipose.data.transforms import TopDownTransform

    transform = TopDownTransform(
        input_size,
        skeleton,
        train=True,
        use_udp=entry.use_udp,
        photometric=False,
        half_body_prob=0.3 if entry.half_body else 0.0,
        **FULL_MIX_AUGMENTATION,
    )
    codecs = {
        rule: build_codec(entry.codec, input_size, heatmap_size, 2.0, edge_rule=rule)
        for rule in ("mmpose", "window")
    }
    h, w = input_size
    counts = {"labelled": 0, "before": 0, "mmpose": 0, "window": 0}
    rng = np.random.default_rng(seed)
    blank = {size: np.zeros((*size, 3), np.uint8) for size in set(image_sizes)}
    for _ in range(samples):
        i = int(rng.integers(len(instances)))
        out = transform(blank[image_sizes[i]], instances[i], np.random.default_rng(int(rng.integers(2**63))))
        k = out["keypoints"]
        labelled = k[:, 2] > 0
        on_crop = (k[:, 0] >= 0) & (k[:, 0] <= w - 1) & (k[:, 1] >= 0) & (k[:, 1] <= h - 1)
        counts["labelled"] += int(labelled.sum())
        counts["before"] += int((labelled & on_crop).sum())
        for rule, codec in codecs.items():
            counts[rule] += int((codec.encode(k)[1] > 0).sum())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="existing synthetic world (default: generate one)"
    )
    parser.add_argument("--preset", default="tiny", choices=("tiny", "default"), help="world to generate")
    parser.add_argument("--samples", type=int, default=2000, help="augmented samples per dataset")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    parser.add_argument("--heatmap-size", type=int, nargs=2, default=(64, 48), metavar=("H", "W"))
    args = parser.parse_args()

    import cv2

    from multipose.data.config import parse_entry
    from multipose.data.datamodule import filter_train_instances, read_split
    from multipose.data.synthetic import ensure_world, world_datasets
    from multipose.skeletons import get_skeleton

    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="multipose_share_")
        root = Path(tmp.name) / "world"
        ensure_world(root, args.preset, seed=0)
    print(
        f"synthetic world ({args.preset if args.root is None else root}), full_mix augmentation "
        f"{FULL_MIX_AUGMENTATION} + ViTPose defaults, no photometric; {args.samples} samples per dataset"
    )
    print(f"{'dataset':<15}{'codec':>6}{'labelled':>10}{'before':>9}{'mmpose':>9}{'window':>9}")
    total = {"labelled": 0, "before": 0, "mmpose": 0, "window": 0}
    for spec in world_datasets(args.preset):
        codec = FULL_MIX_CODECS.get(spec.skeleton, "udp")
        entry = parse_entry(spec.name, {**spec.as_config(), "codec": codec}, str(root))
        skel = get_skeleton(entry.skeleton)
        instances = filter_train_instances(read_split(entry, "train", skel), spec.name, entry.train.ann_file)
        sizes: dict[str, tuple[int, int]] = {}
        for inst in instances:  # each image decoded once, for its size only
            if inst.image_path not in sizes:
                sizes[inst.image_path] = cv2.imread(inst.image_path, cv2.IMREAD_GRAYSCALE).shape[:2]
        image_sizes = [sizes[inst.image_path] for inst in instances]
        c = supervised_share(
            entry,
            skel,
            instances,
            image_sizes,
            tuple(args.input_size),
            tuple(args.heatmap_size),
            args.samples,
        )
        for key in total:
            total[key] += c[key]
        n = max(c["labelled"], 1)
        print(
            f"{spec.name:<15}{entry.codec:>6}{c['labelled']:>10}{c['before'] / n:>9.2%}{c['mmpose'] / n:>9.2%}"
            f"{c['window'] / n:>9.2%}"
        )
    n = max(total["labelled"], 1)
    print(
        f"{'all':<15}{'':>6}{total['labelled']:>10}{total['before'] / n:>9.2%}{total['mmpose'] / n:>9.2%}"
        f"{total['window'] / n:>9.2%}"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
