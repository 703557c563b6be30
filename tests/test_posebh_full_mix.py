"""``+experiment=full_mix +bridge=posebh`` on miniatures of the six real annotation files (CPU fast_dev_run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import compose
from fixtures_formats import coco_ann, coco_image, mpii_entry, wholebody_ann, write_jpegs, write_json

#: dataset -> (train file, val file, image folder(s), K) in conf/data/full_mix.yaml's layout
COCO_STYLE = {
    "coco": (
        "coco/annotations/person_keypoints_train2017.json",
        "coco/annotations/person_keypoints_val2017.json",
        17,
    ),
    "aic": ("aic/annotations/aic_train.json", "aic/annotations/aic_val.json", 14),
    "ap10k": ("ap10k/annotations/ap10k-train-split1.json", "ap10k/annotations/ap10k-val-split1.json", 17),
    "apt36k": ("ap36k/annotations/train_annotations_1.json", "ap36k/annotations/val_annotations_1.json", 17),
}


def _images(cfg, name: str, split: str) -> Path:
    return Path(str(cfg.data.datasets[name][split].img_dir))


def write_full_mix_miniature(root: Path, cfg) -> None:
    """Two images with two people each per split and dataset, at the paths of ``conf/data/full_mix.yaml``."""
    names = ["000000000001.jpg", "000000000002.jpg"]
    imgs = [coco_image(1, names[0]), coco_image(2, names[1])]
    boxes = [(5.0, 4.0, 30.0, 20.0), (20.0, 10.0, 30.0, 30.0)]
    for split in ("train", "val"):
        for name, (train_file, val_file, k) in COCO_STYLE.items():
            write_jpegs(root / _images(cfg, name, split), names)
            anns = [
                coco_ann(2 * i + j + 1, img["id"], k, bbox=boxes[j])
                for i, img in enumerate(imgs)
                for j in range(2)
            ]
            path = root / (train_file if split == "train" else val_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(
                path, {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
            )
        wb = root / f"coco/annotations/coco_wholebody_{split}_v1.0.json"
        anns = [wholebody_ann(2 * i + j + 1, img["id"]) for i, img in enumerate(imgs) for j in range(2)]
        write_json(wb, {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "person"}]})
        joints = [[10.0 + i, 10.0 + i] for i in range(16)]
        mpii = [
            mpii_entry(n, joints, [1] * 16, center=(25.0, 22.0), scale=0.2, headbox=[10, 5, 22, 21])
            for n in names
        ]
        write_jpegs(root / "mpii/images", names)
        (root / "mpii/annotations").mkdir(parents=True, exist_ok=True)
        write_json(root / f"mpii/annotations/mpii_{split}.json", mpii)
    dets = [{"image_id": i, "category_id": 1, "bbox": list(boxes[0]), "score": 0.9} for i in (1, 2)]
    det = root / "coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
    det.parent.mkdir(parents=True, exist_ok=True)
    write_json(det, dets)


TINY = [
    "+backbone.overrides.embed_dim=32",
    "+backbone.overrides.depth=1",
    "+backbone.overrides.num_heads=2",
    "head.deconv_filters=[16,16]",
    "bridge.posebh.deconv_filters=[16,16]",
    "bridge.posebh.dim=16",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.strategy=auto",
    "trainer.precision=32",
    "data.batch_size=6",
    "data.val_batch_size=4",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.persistent_workers=false",
    "+trainer.fast_dev_run=true",
    "print_config=false",
]


@pytest.mark.slow
def test_full_mix_posebh_fast_dev_run_on_miniature_files(tmp_path):
    from omegaconf import open_dict

    from multipose.train import train

    root = tmp_path / "datasets"
    cfg = compose(
        "train",
        [
            "+experiment=full_mix",
            "+bridge=posebh",
            f"paths.data_root={root}",
            f"paths.root_dir={tmp_path}",
            *TINY,
        ],
    )
    write_full_mix_miniature(root, cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(tmp_path)
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"train/posebh/phm", "train/posebh/ppc", "train/posebh/css"} <= set(metrics)
    assert "val/coco/proto/AP" in metrics and "val/mpii/proto/PCKh@0.5" in metrics
