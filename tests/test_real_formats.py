"""The readers on miniatures of the real annotation files users have.

Each fixture copies the field names, types and quirks of one real file (COCO person keypoints,
COCO-WholeBody v1.0, AIC in mmpose's COCO-style conversion, AP-10K, APT-36K, OCHuman's COCO-format
export, CrowdPose, Halpe, COCO-format detection results, InterHand2.6M, OneHand10K). The number of
samples is checked twice: against a count written out by hand per fixture, and against
:func:`mmpose_count`, a plain restatement of mmpose 0.x's ``_load_coco_keypoint_annotation_kernel``
rules (the dataset classes ViTPose trains with), applied to the raw JSON.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures_formats import write_jpegs, write_json
from multipose.data.datamodule import MultiPoseDataModule
from multipose.data.formats import (
    DatasetFormatError,
    ImageRecord,
    read_coco,
    read_detections,
    read_interhand,
    sample_instances,
)
from multipose.data.formats.interhand import project_world_to_pixels

W, H = 64, 48  # image size of every fixture


# ------------------------------------------------------------------------------------------------ helpers


def mmpose_count(data: dict, layout: str = "coco") -> int:
    """Samples mmpose 0.x would build from a COCO-style file (train, and validation with GT boxes).

    ``getAnnIds(iscrowd=False)`` (no crowd), box sanitising (``x1 = max(0, x)``, ``x2 = min(W - 1, x1 +
    max(0, w - 1))``, kept when ``x2 > x1``, ``y2 > y1`` and ``area`` is absent or positive), then: no
    ``keypoints`` field or ``max(keypoints) == 0`` (body part only for COCO-WholeBody) -> dropped;
    ``num_keypoints == 0`` -> dropped (not checked for COCO-WholeBody).
    """
    images = {im["id"]: im for im in data["images"]}
    n = 0
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or "bbox" not in ann:  # xtcocotools: a missing iscrowd is 0
            continue
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2 = min(im["width"] - 1, x1 + max(0, w - 1))
        y2 = min(im["height"] - 1, y1 + max(0, h - 1))
        if not (("area" not in ann or ann["area"] > 0) and x2 > x1 and y2 > y1):
            continue
        if "keypoints" not in ann or max(ann["keypoints"]) == 0:
            continue
        if layout == "coco" and ann.get("num_keypoints") == 0:
            continue
        n += 1
    return n


def kps(k: int, labelled: list[int] | None = None, v: float = 2, x0: float = 10.0) -> list[float]:
    """Flat COCO keypoints: joints in ``labelled`` (default all) at (x0 + i, 12 + i / 2) with ``v``, others 0."""
    out: list[float] = []
    for i in range(k):
        if labelled is None or i in labelled:
            out += [x0 + i * 0.5, 12.0 + i * 0.25, v]
        else:
            out += [0, 0, 0]
    return out


def write_dataset(tmp_path: Path, data: dict, name: str = "ann.json", png: bool = False) -> tuple[Path, Path]:
    img_dir = tmp_path / "images"
    for im in data["images"]:
        path = img_dir / im["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((im["height"], im["width"], 3), 90, np.uint8))
    ann = tmp_path / name
    ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ann, img_dir


def check_counts(insts, data: dict, expected_samples: int, layout: str = "coco") -> list:
    assert len(insts) == len(data["annotations"])  # every annotation is a ground-truth record
    samples = sample_instances(insts)
    assert len(samples) == expected_samples == mmpose_count(data, layout)
    return samples


def rle(h: int = H, w: int = W) -> dict:
    return {"size": [h, w], "counts": "PPYo0"}


# ------------------------------------------------------------------------------------------------ COCO


def coco_person_data() -> dict:
    """person_keypoints_val2017.json in small: licences and URLs on images, a non-ASCII file name, an image
    without people, polygons, an iscrowd RLE ignore region, a `num_keypoints: 0` person, a box past the
    image edge, and a zero-area annotation."""
    images = [
        {
            "license": 4,
            "file_name": "000000000139.jpg",
            "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg",
            "height": H,
            "width": W,
            "date_captured": "2013-11-21 01:34:01",
            "flickr_url": "http://x/y.jpg",
            "id": 139,
        },
        {
            "license": 1,
            "file_name": "Zürich_straße_東京.jpg",
            "coco_url": "",
            "height": H,
            "width": W,
            "date_captured": "",
            "flickr_url": "",
            "id": 785,
        },
        {
            "license": 1,
            "file_name": "000000000632.jpg",
            "coco_url": "",
            "height": H,
            "width": W,
            "date_captured": "",
            "flickr_url": "",
            "id": 632,
        },  # no people: no annotation
    ]
    poly = [[10.0, 10.0, 30.0, 10.0, 30.0, 40.0]]
    anns = [
        {
            "segmentation": poly,
            "num_keypoints": 10,
            "area": 412.5,
            "iscrowd": 0,
            "keypoints": kps(17, list(range(10))),
            "image_id": 139,
            "bbox": [8.2, 6.1, 30.4, 35.0],
            "category_id": 1,
            "id": 230831,
        },
        {
            "segmentation": rle(),
            "num_keypoints": 0,
            "area": 1200.0,
            "iscrowd": 1,
            "keypoints": [0] * 51,
            "image_id": 139,
            "bbox": [0.0, 0.0, 60.0, 40.0],
            "category_id": 1,
            "id": 900100139,
        },  # ignore region
        {
            "segmentation": poly,
            "num_keypoints": 0,
            "area": 35.2,
            "iscrowd": 0,
            "keypoints": [0] * 51,
            "image_id": 139,
            "bbox": [50.0, 30.0, 6.0, 9.0],
            "category_id": 1,
            "id": 1218137,
        },  # too small to label
        {
            "segmentation": poly,
            "num_keypoints": 17,
            "area": 900.0,
            "iscrowd": 0,
            "keypoints": kps(17),
            "image_id": 785,
            "bbox": [40.0, 20.0, 40.0, 40.0],
            "category_id": 1,
            "id": 441,
        },  # past the right edge
        {
            "segmentation": poly,
            "num_keypoints": 3,
            "area": 0.0,
            "iscrowd": 0,
            "keypoints": kps(17, [0, 1, 2]),
            "image_id": 785,
            "bbox": [5.0, 5.0, 10.0, 10.0],
            "category_id": 1,
            "id": 442,
        },  # zero area: mmpose drops
    ]
    cats = [
        {
            "supercategory": "person",
            "id": 1,
            "name": "person",
            "keypoints": ["nose"] * 17,
            "skeleton": [[16, 14]],
        }
    ]
    return {"info": {"year": 2017}, "licenses": [], "images": images, "annotations": anns, "categories": cats}


def test_coco_person_keypoints(tmp_path):
    data = coco_person_data()
    ann, img_dir = write_dataset(tmp_path, data)
    insts, images = read_coco(ann, img_dir, "coco", "coco", return_images="records", invalid_boxes="skip")
    samples = check_counts(insts, data, expected_samples=2)
    assert [s.ann_id for s in samples] == [230831, 441]
    by_id = {i.ann_id: i for i in insts}
    assert by_id[900100139].iscrowd and by_id[1218137].unusable == "unlabelled"
    assert by_id[442].unusable == "area_0"
    # mmpose's box sanitising (x2 = x1 + w - 1) changes every box, so the file's own box is kept for evaluation
    file_box = next(a["bbox"] for a in data["annotations"] if a["id"] == 230831)
    assert by_id[230831].extra == {"num_keypoints": 10, "bbox": file_box}
    assert by_id[230831].area == pytest.approx(412.5)
    # the box past the image edge is clipped for cropping; the file's box stays for evaluation
    assert by_id[441].bbox[0] + by_id[441].bbox[2] <= W and by_id[441].extra["bbox"] == [
        40.0,
        20.0,
        40.0,
        40.0,
    ]
    # every image, the one without people and the non-ASCII one included
    assert set(images) == {139, 785, 632} and isinstance(images[632], ImageRecord)
    assert images[785].path.endswith("Zürich_straße_東京.jpg") and Path(images[785].path).is_file()
    assert (images[785].width, images[785].height) == (W, H)
    # the zero-area annotation is an error under the strict policy, naming the option
    with pytest.raises(DatasetFormatError, match=r"annotation id=442.*'area' 0.*data\.invalid_boxes=skip"):
        read_coco(ann, img_dir, "coco", "coco", invalid_boxes="error")


def test_coco_non_ascii_image_is_loaded_through_the_datamodule(tmp_path):
    data = coco_person_data()
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        write_dataset(tmp_path / split, data)
    entry = {
        "format": "coco",
        "skeleton": "coco",
        "batch_count": 2,
        "train": {"ann_file": "train/ann.json", "img_dir": "train/images"},
        "val": {"ann_file": "val/ann.json", "img_dir": "val/images"},
    }
    dm = MultiPoseDataModule(
        {"coco": entry},
        root=str(tmp_path),
        input_size=(64, 48),
        heatmap_size=(16, 12),
        batch_size=2,
        check_images="decode",
    )
    dm.setup("fit")
    assert len(dm.train_datasets[0]) == 2 and len(dm.val_datasets[0]) == 2
    sample = dm.train_datasets[0][1]  # ann 441 on the non-ASCII file
    assert sample["image"].shape == (3, 64, 48) and int(sample["ann_id"]) == 441
    assert len(dm.val_instances("coco")) == 5 and set(dm.val_images("coco")) == {139, 785, 632}


# ------------------------------------------------------------------------------------------------ WholeBody


def wholebody_ann(ann_id: int, image_id: int, body: list[float], face: bool, lefthand: bool, **kw) -> dict:
    """A COCO-WholeBody v1.0 annotation: part lists, ``*_valid`` flags and part boxes ([0, 0, 0, 0] when
    invalid); face and hand 'visibilities' are confidences in (0, 1] as in the real file."""
    conf = [0.03135, 0.5025, 1.0]
    face_kpts = [v for i in range(68) for v in (20 + i * 0.1, 20.0, conf[i % 3])] if face else [0.0] * 204
    lh = [v for i in range(21) for v in (30 + i * 0.1, 25.0, conf[i % 3])] if lefthand else [0.0] * 63
    ann = {
        "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]],
        "num_keypoints": sum(1 for v in body[2::3] if v > 0),
        "area": 500.0,
        "iscrowd": 0,
        "keypoints": body,
        "image_id": image_id,
        "bbox": [4.0, 4.0, 40.0, 40.0],
        "category_id": 1,
        "id": ann_id,
        "face_box": [18.0, 18.0, 10.0, 6.0] if face else [0.0, 0.0, 0.0, 0.0],
        "lefthand_box": [28.0, 22.0, 4.0, 6.0] if lefthand else [0.0, 0.0, 0.0, 0.0],
        "righthand_box": [0.0, 0.0, 0.0, 0.0],
        "lefthand_kpts": lh,
        "righthand_kpts": [0.0] * 63,
        "face_kpts": face_kpts,
        "face_valid": face,
        "lefthand_valid": lefthand,
        "righthand_valid": False,
        "foot_kpts": [0.0] * 18,
        "foot_valid": False,
    }
    ann.update(kw)
    return ann


def test_coco_wholebody_v1(tmp_path):
    images = [
        {
            "license": 4,
            "file_name": "000000000785.jpg",
            "coco_url": "",
            "height": H,
            "width": W,
            "date_captured": "",
            "flickr_url": "",
            "id": 785,
        },
        {
            "license": 4,
            "file_name": "000000000872.jpg",
            "coco_url": "",
            "height": H,
            "width": W,
            "date_captured": "",
            "flickr_url": "",
            "id": 872,
        },
    ]
    anns = [
        wholebody_ann(1, 785, kps(17), face=True, lefthand=True),
        # body unlabelled but the face is: mmpose tests max(body keypoints) only -> not a sample
        wholebody_ann(2, 785, [0.0] * 51, face=True, lefthand=False),
        # num_keypoints 0 is not checked for COCO-WholeBody: a sample, like in mmpose
        wholebody_ann(3, 872, kps(17, [5]), face=False, lefthand=False, num_keypoints=0),
        wholebody_ann(4, 872, [0.0] * 51, face=False, lefthand=False, iscrowd=1, segmentation=rle()),
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    ann, img_dir = write_dataset(tmp_path, data)
    insts = read_coco(ann, img_dir, "coco_wholebody", "wb", layout="coco_wholebody")
    samples = check_counts(insts, data, expected_samples=2, layout="coco_wholebody")
    assert [s.ann_id for s in samples] == [1, 3]
    first = insts[0]
    assert first.keypoints.shape == (133, 3)
    # face confidences kept as stored (everything downstream tests v > 0), at the face offset 23
    np.testing.assert_allclose(first.keypoints[23:26, 2], [0.03135, 0.5025, 1.0], rtol=1e-6)
    assert first.keypoints[23 + 68 : 23 + 68 + 21, 2].min() > 0  # left hand
    assert not first.keypoints[23 + 68 + 21 :, 2].any()  # right hand invalid: zeros
    assert insts[1].unusable == "unlabelled" and insts[1].keypoints[23:91, 2].min() > 0


# ------------------------------------------------------------------------------------------------ AIC


def test_aic_mmpose_coco_style_conversion(tmp_path):
    """mmpose's aic_{train,val}.json: 14 keypoints, hash file names, an image 'url'; no 'iscrowd' and no
    'area' fields (xtcocotools reads a missing iscrowd as 0); AIC's 'not labelled' (3) became v 0, and a
    person with no labelled joint has num_keypoints 0 (its coordinates may remain)."""
    name = "0a00c0b5493774b3de2cf439c84702dd839af9a2.jpg"
    images = [
        {"file_name": name, "height": H, "width": W, "id": 1, "url": "http://www.sogou.com/x.jpg"},
        {"file_name": "fe5b1bc7a4c1d71dfce5ab1b6cd3b8e4e3bb5d51.jpg", "height": H, "width": W, "id": 2},
    ]
    ghost = kps(14, v=0)  # coordinates without labels
    anns = [
        {
            "bbox": [2.0, 3.0, 30.0, 40.0],
            "keypoints": kps(14, list(range(12))),
            "num_keypoints": 12,
            "image_id": 1,
            "category_id": 1,
            "id": 1,
        },
        {
            "bbox": [20.0, 3.0, 30.0, 40.0],
            "keypoints": ghost,
            "num_keypoints": 0,
            "image_id": 1,
            "category_id": 1,
            "id": 2,
        },
        {
            "bbox": [1.0, 1.0, 20.0, 20.0],
            "keypoints": kps(14, [0, 13], v=1),
            "num_keypoints": 2,
            "image_id": 2,
            "category_id": 1,
            "id": 3,
        },
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    ann, img_dir = write_dataset(tmp_path, data)
    insts = read_coco(ann, img_dir, "aic", "aic")
    samples = check_counts(insts, data, expected_samples=2)
    assert insts[1].unusable == "num_keypoints_0"
    assert samples[1].keypoints[[0, 13], 2].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------------ animals


def test_ap10k_species_categories(tmp_path):
    """AP-10K: category ids are species (never filtered), images carry 'background', `num_keypoints: 0`."""
    images = [
        {"license": 1, "id": 1, "file_name": "000000000001.jpg", "width": W, "height": H, "background": 5},
        {"license": 1, "id": 37, "file_name": "000000000037.jpg", "width": W, "height": H, "background": 2},
    ]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 13,
            "bbox": [1.0, 2.0, 40.0, 30.0],
            "area": 1200.0,
            "iscrowd": 0,
            "num_keypoints": 17,
            "keypoints": kps(17),
        },
        {
            "id": 2,
            "image_id": 37,
            "category_id": 40,
            "bbox": [3.0, 2.0, 20.0, 30.0],
            "area": 600.0,
            "iscrowd": 0,
            "num_keypoints": 5,
            "keypoints": kps(17, [0, 1, 2, 3, 4]),
        },
        {
            "id": 3,
            "image_id": 37,
            "category_id": 40,
            "bbox": [30.0, 2.0, 20.0, 30.0],
            "area": 600.0,
            "iscrowd": 0,
            "num_keypoints": 0,
            "keypoints": [0] * 51,
        },
    ]
    cats = [
        {"supercategory": "Bovidae", "id": 13, "name": "sheep"},
        {"supercategory": "Felidae", "id": 40, "name": "cat"},
    ]
    data = {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}
    ann, img_dir = write_dataset(tmp_path, data)
    check_counts(read_coco(ann, img_dir, "ap10k", "ap10k"), data, expected_samples=2)


def test_apt36k_video_frames_in_subfolders(tmp_path):
    """APT-36K (ViTPose++'s COCO-style files): PNG frames under species/clip folders, ids per frame,
    track ids on annotations, the AP-10K keypoint order."""
    images = [
        {
            "id": 10001,
            "file_name": "Sheep/clip12/0001.png",
            "width": W,
            "height": H,
            "video_id": 12,
            "frame_id": 1,
        },
        {
            "id": 10002,
            "file_name": "Sheep/clip12/0002.png",
            "width": W,
            "height": H,
            "video_id": 12,
            "frame_id": 2,
        },
    ]
    anns = [
        {
            "id": 5,
            "image_id": 10001,
            "category_id": 2,
            "track_id": 0,
            "bbox": [1.0, 1.0, 30.0, 30.0],
            "area": 900.0,
            "iscrowd": 0,
            "num_keypoints": 17,
            "keypoints": kps(17),
        },
        {
            "id": 6,
            "image_id": 10002,
            "category_id": 2,
            "track_id": 0,
            "bbox": [2.0, 1.0, 30.0, 30.0],
            "area": 900.0,
            "iscrowd": 0,
            "num_keypoints": 9,
            "keypoints": kps(17, list(range(9))),
        },
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": 2, "name": "sheep"}]}
    ann, img_dir = write_dataset(tmp_path, data)
    insts = read_coco(ann, img_dir, "ap10k", "apt36k")
    check_counts(insts, data, expected_samples=2)
    assert insts[1].image_path == str(img_dir / "Sheep" / "clip12" / "0002.png")


# ------------------------------------------------------------------------------------------------ OCHuman


def test_ochuman_coco_format_and_the_original_layout(tmp_path):
    """ochuman_coco_format_val_range_0.00_1.00.json (OCHumanApi's export): ids from 1, RLE masks, area =
    box area, keypoints remapped to COCO (vis 2, occluded 1, missing 0) with num_keypoints."""
    images = [
        {"id": 1, "file_name": "000001.jpg", "height": H, "width": W},
        {"id": 2, "file_name": "000003.jpg", "height": H, "width": W},
    ]
    anns = [
        {
            "image_id": 1,
            "area": 900,
            "num_keypoints": 17,
            "iscrowd": 0,
            "id": 1,
            "category_id": 1,
            "keypoints": kps(17),
            "segmentation": rle(),
            "bbox": [1, 1, 30, 30],
        },
        {
            "image_id": 1,
            "area": 900,
            "num_keypoints": 4,
            "iscrowd": 0,
            "id": 2,
            "category_id": 1,
            "keypoints": kps(17, [5, 6, 11, 12], v=1),
            "segmentation": rle(),
            "bbox": [20, 1, 30, 30],
        },
        {
            "image_id": 2,
            "area": 400,
            "num_keypoints": 0,
            "iscrowd": 0,
            "id": 3,
            "category_id": 1,
            "keypoints": [0] * 51,
            "segmentation": rle(),
            "bbox": [2, 2, 20, 20],
        },
    ]
    data = {
        "annotations": anns,
        "categories": [{"supercategory": "person", "id": 1, "name": "person"}],
        "images": images,
    }
    ann, img_dir = write_dataset(tmp_path, data)
    check_counts(read_coco(ann, img_dir, "ochuman", "ochuman"), data, expected_samples=2)
    original = write_json(
        tmp_path / "ochuman.json",
        {
            "keypoint_names": ["right_shoulder"] * 19,
            "keypoint_visible": {"missing": 0, "vis": 1},
            "images": [
                {
                    "image_id": 1,
                    "file_name": "000001.jpg",
                    "height": H,
                    "width": W,
                    "annotations": [
                        {"bbox": [1, 1, 31, 31], "keypoints": None, "segms": None, "max_iou": 0.6}
                    ],
                }
            ],
        },
    )
    with pytest.raises(DatasetFormatError, match="original OCHuman file.*ochuman_coco_format"):
        read_coco(original, img_dir, "ochuman", "ochuman")


# ------------------------------------------------------------------------------------------------ CrowdPose


def crowdpose_data() -> dict:
    """mmpose_crowdpose_{trainval,test}.json: `crowdIndex` per image, no `area`, `num_keypoints` counting
    only the 12 limb joints (head top 12 and neck 13 excluded; ~11 % of the real val annotations have
    `num_keypoints: 0` with head / neck labelled), `iscrowd: 1` regions without keypoints."""
    images = [
        {"file_name": "114203.jpg", "id": 114203, "height": H, "width": W, "crowdIndex": 0.76},
        {"file_name": "104173.jpg", "id": 104173, "height": H, "width": W, "crowdIndex": 0.05},
        {"file_name": "115625.jpg", "id": 115625, "height": H, "width": W, "crowdIndex": 0.93},
    ]  # no people
    anns = [
        {
            "num_keypoints": 12,
            "iscrowd": 0,
            "keypoints": kps(14, v=1),
            "image_id": 114203,
            "bbox": [2, 2, 30, 40],
            "category_id": 1,
            "id": 165388,
        },
        {
            "num_keypoints": 8,
            "iscrowd": 0,
            "keypoints": kps(14, [0, 1, 3, 5, 6, 7, 8, 9, 12, 13]),
            "image_id": 114203,
            "bbox": [30.5, 2.25, 20.0, 40.0],
            "category_id": 1,
            "id": 181177,
        },
        # only head top and neck labelled: num_keypoints 0 -> not a sample, not scored (xtcocotools reads the field)
        {
            "num_keypoints": 0,
            "iscrowd": 0,
            "keypoints": kps(14, [12, 13]),
            "image_id": 104173,
            "bbox": [5, 5, 20, 20],
            "category_id": 1,
            "id": 181178,
        },
        {
            "num_keypoints": 0,
            "iscrowd": 0,
            "keypoints": [0] * 42,
            "image_id": 104173,
            "bbox": [27.4, 2.0, 29.6, 39.8],
            "category_id": 1,
            "id": 181179,
        },
        # a crowd region (the real val file has 106): no keypoints, a wide box
        {
            "num_keypoints": 0,
            "iscrowd": 1,
            "keypoints": [0] * 42,
            "image_id": 114203,
            "bbox": [0, 0, 63, 20],
            "category_id": 1,
            "id": 181180,
        },
    ]
    cats = [{"supercategory": "person", "id": 1, "name": "person", "keypoints": ["left_shoulder"] * 14}]
    return {"categories": cats, "images": images, "annotations": anns}


def test_crowdpose_conventions_and_crowd_index(tmp_path):
    data = crowdpose_data()
    ann, img_dir = write_dataset(tmp_path, data)
    insts, images = read_coco(ann, img_dir, "crowdpose", "crowdpose", return_images="records")
    samples = check_counts(insts, data, expected_samples=2)
    assert [s.ann_id for s in samples] == [165388, 181177]
    three = insts[2]
    assert three.num_labelled == 2 and three.unusable == "num_keypoints_0"
    # the evaluators' inputs: file num_keypoints and the image's crowdIndex on every record ...
    assert [i.extra["num_keypoints"] for i in insts] == [12, 8, 0, 0, 0]
    assert [i.extra["crowdIndex"] for i in insts] == [0.76, 0.76, 0.05, 0.05, 0.76]
    assert insts[4].iscrowd
    # the fixture follows the real convention: num_keypoints = labelled joints among the first 12
    assert all(a["num_keypoints"] == sum(v > 0 for v in a["keypoints"][2:36:3]) for a in data["annotations"])
    # ... and on every image, the one without people included (its detections count in the hard split)
    assert {i: r.extra["crowdIndex"] for i, r in images.items()} == {114203: 0.76, 104173: 0.05, 115625: 0.93}
    assert insts[0].area == pytest.approx(30 * 40)  # no 'area' field: box area


def test_crowdpose_through_the_datamodule(tmp_path):
    data = crowdpose_data()
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        write_dataset(tmp_path / split, data)
    entry = {
        "format": "coco",
        "skeleton": "crowdpose",
        "batch_count": 2,
        "train": {"ann_file": "train/ann.json", "img_dir": "train/images"},
        "val": {"ann_file": "val/ann.json", "img_dir": "val/images"},
    }
    dm = MultiPoseDataModule(
        {"crowdpose": entry}, root=str(tmp_path), input_size=(64, 48), heatmap_size=(16, 12), batch_size=2
    )
    dm.setup("fit")
    assert len(dm.train_datasets[0]) == 2 and len(dm.val_datasets[0]) == 2
    assert dm.val_images("crowdpose")[115625].extra == {"crowdIndex": 0.93}
    assert {i.extra["crowdIndex"] for i in dm.val_instances("crowdpose")} == {0.76, 0.05}
    # the reader's crowdIndex reaches the CrowdPose evaluator, images without people included
    from multipose.evaluation import build_evaluator

    ev = build_evaluator(
        "coco",
        "crowdpose",
        dm.val_instances("crowdpose"),
        dm.skeletons["crowdpose"],
        image_ids=dm.val_image_ids("crowdpose"),
    )
    assert {im["id"]: im.get("crowdIndex") for im in ev.gt["images"]} == {
        114203: 0.76,
        104173: 0.05,
        115625: 0.93,
    }


# ------------------------------------------------------------------------------------------------ Halpe


def test_halpe_136_points(tmp_path):
    """halpe_train_v1.json: HICO-DET file names, 136 keypoints in one `keypoints` list, hands and face
    labelled for some people only."""
    images = [
        {"file_name": "HICO_train2015_00000001.jpg", "id": 1, "width": W, "height": H},
        {"file_name": "HICO_train2015_00000002.jpg", "id": 2, "width": W, "height": H},
    ]
    anns = [
        {
            "keypoints": kps(136, list(range(26)) + list(range(94, 136))),
            "image_id": 1,
            "bbox": [1, 1, 40, 40],
            "category_id": 1,
            "id": 1,
            "iscrowd": 0,
            "num_keypoints": 68,
            "area": 1600,
        },
        {
            "keypoints": [0] * 408,
            "image_id": 2,
            "bbox": [1, 1, 40, 40],
            "category_id": 1,
            "id": 2,
            "iscrowd": 0,
            "num_keypoints": 0,
            "area": 1600,
        },
        {
            "keypoints": kps(136, list(range(26, 94))),
            "image_id": 2,
            "bbox": [20, 1, 40, 40],
            "category_id": 1,
            "id": 3,
            "iscrowd": 0,
            "num_keypoints": 68,
            "area": 1600,
        },
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    ann, img_dir = write_dataset(tmp_path, data)
    insts = read_coco(ann, img_dir, "halpe", "halpe")
    samples = check_counts(insts, data, expected_samples=2)
    assert samples[1].keypoints.shape == (136, 3) and samples[1].num_labelled == 68


# ------------------------------------------------------------------------------------------------ detections


def test_coco_detection_results(tmp_path, caplog):
    """COCO_val2017_detections_AP_H_56_person.json: a list of {bbox, category_id, image_id, score}
    covering every val image, people-free images included; mmpose keeps category 1 with score >= thr."""
    data = coco_person_data()
    ann, img_dir = write_dataset(tmp_path, data)
    _, images = read_coco(ann, img_dir, "coco", "coco", return_images="records", invalid_boxes="skip")
    dets = [
        {"bbox": [8.25, 6.0, 30.5, 35.25], "category_id": 1, "image_id": 139, "score": 0.9990234375},
        {"bbox": [40.0, 20.0, 40.0, 40.0], "category_id": 1, "image_id": 785, "score": 0.49},
        {
            "bbox": [1.0, 1.0, 10.0, 20.0],
            "category_id": 1,
            "image_id": 632,
            "score": 0.21,
        },  # no GT person there
        {"bbox": [1.0, 1.0, 10.0, 20.0], "category_id": 1, "image_id": 632, "score": 0.0012},
        {"bbox": [3.0, 3.0, 10.0, 20.0], "category_id": 62, "image_id": 632, "score": 0.95},  # a chair
    ]
    det_file = write_json(tmp_path / "dets.json", dets)
    thr = 0.01
    expected = sum(1 for d in dets if d["category_id"] == 1 and d["score"] >= thr)  # mmpose's two filters
    with caplog.at_level(logging.INFO, logger="multipose.data.formats"):
        out = read_detections(det_file, images, "coco", "coco", score_thr=thr, category_ids=[1])
    assert len(out) == expected == 3
    assert {d.image_id for d in out} == {139, 785, 632}
    assert out[2].image_path == images[632].path and out[0].score == pytest.approx(0.9990234375)
    assert "1 below score_thr" in caplog.text and "1 other categories" in caplog.text
    # through the DataModule: det_category_ids defaults to mmpose's [1]
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        write_dataset(tmp_path / split, data)
    entry = {
        "format": "coco",
        "skeleton": "coco",
        "batch_count": 2,
        "train": {"ann_file": "train/ann.json", "img_dir": "train/images"},
        "val": {
            "ann_file": "val/ann.json",
            "img_dir": "val/images",
            "det_file": str(det_file),
            "det_score_thr": thr,
        },
    }
    dm = MultiPoseDataModule(
        {"coco": entry}, root=str(tmp_path), input_size=(64, 48), heatmap_size=(16, 12), batch_size=2
    )
    dm.setup("validate")
    assert len(dm.val_datasets[0]) == expected


# ------------------------------------------------------------------------------------------------ hands


def interhand_files(tmp_path: Path) -> tuple[Path, dict]:
    """InterHand2.6M_test_{data,camera,joint_3d}.json with one camera and two frames; the 3D joints are
    built from chosen pixel positions and depths, so the expected projection is known."""
    rot = cv2.Rodrigues(np.array([0.1, -0.2, 0.05]))[0]
    campos = np.array([100.0, -50.0, 30.0])
    focal, princpt = np.array([1200.0, 1180.0]), np.array([W / 2, H / 2])
    rng = np.random.default_rng(0)
    pixels = {f: rng.uniform([2, 2], [W - 2, H - 2], size=(42, 2)) for f in ("0", "3")}
    depth = {f: rng.uniform(800, 1200, size=42) for f in ("0", "3")}
    world = {}
    for f in pixels:
        cam = np.stack(
            [
                (pixels[f][:, 0] - princpt[0]) / focal[0] * depth[f],
                (pixels[f][:, 1] - princpt[1]) / focal[1] * depth[f],
                depth[f],
            ],
            axis=1,
        )
        world[f] = (rot.T @ cam.T).T + campos  # X_cam = R (X_world - campos)
    cams = {
        "0": {
            "campos": {"400262": campos.tolist()},
            "camrot": {"400262": rot.tolist()},
            "focal": {"400262": focal.tolist()},
            "princpt": {"400262": princpt.tolist()},
        }
    }
    joints = {
        "0": {
            f: {
                "world_coord": world[f].tolist(),
                "joint_valid": [[1]] * 42,
                "hand_type": "interacting",
                "hand_type_valid": True,
            }
            for f in world
        }
    }
    images = [
        {
            "id": 0,
            "file_name": "Capture0/ROM04_LT_Occlusion/cam400262/image0000.jpg",
            "width": W,
            "height": H,
            "capture": 0,
            "subject": 0,
            "seq_name": "ROM04_LT_Occlusion",
            "camera": "400262",
            "frame_idx": 0,
        },
        {
            "id": 1,
            "file_name": "Capture0/ROM04_LT_Occlusion/cam400262/image0003.jpg",
            "width": W,
            "height": H,
            "capture": 0,
            "subject": 0,
            "seq_name": "ROM04_LT_Occlusion",
            "camera": "400262",
            "frame_idx": 3,
        },
    ]
    right_ok, left_no_root = [1] * 21, [1] * 20 + [0]  # a left hand without a valid wrist: no valid joint
    twelve, eleven = [1] * 11 + [0] * 9 + [1], [1] * 10 + [0] * 10 + [1]
    anns = [
        {
            "id": 0,
            "image_id": 0,
            "bbox": [1, 1, 50, 40],
            "joint_valid": [[v] for v in right_ok + left_no_root],
            "hand_type": "interacting",
            "hand_type_valid": 1,
        },
        {
            "id": 1,
            "image_id": 1,
            "bbox": [1, 1, 50, 40],
            "joint_valid": [[v] for v in eleven + twelve],
            "hand_type": "interacting",
            "hand_type_valid": 1,
        },
    ]
    img_dir = tmp_path / "images" / "test"
    write_jpegs(img_dir, [im["file_name"] for im in images], size=(H, W))
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "hand"}]}
    ann_file = write_json(tmp_path / "InterHand2.6M_test_data.json", data)
    write_json(tmp_path / "InterHand2.6M_test_camera.json", cams)
    write_json(tmp_path / "InterHand2.6M_test_joint_3d.json", joints)
    return ann_file, {"pixels": pixels, "anns": anns}


def test_interhand_projection_validity_and_boxes(tmp_path):
    ann_file, truth = interhand_files(tmp_path)
    insts = read_interhand(ann_file, tmp_path / "images" / "test")
    # right hand of frame 0 (21 valid) and left hand of frame 3 (12 valid); the rootless left hand of frame 0
    # and the right hand of frame 3 with 11 valid joints are not instances (mmpose: more than 11 needed)
    assert [(i.image_id, i.ann_id, i.extra["hand"]) for i in insts] == [(0, 0, "right"), (1, 3, "left")]
    right, left = insts
    np.testing.assert_allclose(right.keypoints[:, :2], truth["pixels"]["0"][:21], atol=1e-3)
    np.testing.assert_allclose(left.keypoints[:, :2], truth["pixels"]["3"][21:], atol=1e-3)
    valid = np.array([1] * 11 + [0] * 9 + [1], bool)
    assert (left.keypoints[:, 2] == np.where(valid, 2, 0)).all()
    # hand box: the tightest box around the valid joints, not the annotation's bbox
    xy = truth["pixels"]["3"][21:][valid]
    x1, y1 = xy.min(0)
    np.testing.assert_allclose(left.bbox, [x1, y1, *(xy.max(0) - [x1, y1])], atol=1e-3)
    assert left.area == pytest.approx(float(left.bbox[2] * left.bbox[3]))


def test_interhand_projection_formula():
    # a point on the optical axis projects to the principal point; one 100 mm to the side at 1 m depth
    # projects focal * 0.1 pixels away
    out = project_world_to_pixels(
        [[0, 0, 1000], [100, 0, 1000]], [0, 0, 0], np.eye(3), [1500, 1400], [320, 240]
    )
    np.testing.assert_allclose(out, [[320, 240], [470, 240]], atol=1e-3)


def test_interhand_through_the_datamodule_and_missing_companion(tmp_path):
    for split in ("train", "val"):
        interhand_files(tmp_path / split)
    entry = {
        "format": "interhand",
        "skeleton": "interhand",
        "metric": "pck",
        "half_body": False,
        "batch_count": 2,
        "train": {"ann_file": "train/InterHand2.6M_test_data.json", "img_dir": "train/images/test"},
        "val": {"ann_file": "val/InterHand2.6M_test_data.json", "img_dir": "val/images/test"},
    }
    dm = MultiPoseDataModule(
        {"ih": entry}, root=str(tmp_path), input_size=(64, 48), heatmap_size=(16, 12), batch_size=2
    )
    dm.setup("fit")
    assert len(dm.train_datasets[0]) == 2 and len(dm.val_datasets[0]) == 2
    assert dm.entries["ih"].val.camera_file.endswith("InterHand2.6M_test_camera.json")
    (tmp_path / "val" / "InterHand2.6M_test_joint_3d.json").unlink()
    from multipose.data.config import DataConfigError

    with pytest.raises(DataConfigError, match=r"datasets\.ih\.val\.joint_file"):
        MultiPoseDataModule(
            {"ih": entry}, root=str(tmp_path), input_size=(64, 48), heatmap_size=(16, 12), batch_size=2
        )


def test_onehand10k(tmp_path):
    """onehand10k_{train,test}.json: 21 keypoints, sub-folder file names, segmentation and area but no
    num_keypoints, missing joints all zero; mmpose's hand datasets drop only crowd and all-zero annotations."""
    images = [
        {"file_name": "Train/source/1095.jpg", "height": H, "width": W, "id": 1},
        {"file_name": "Train/source/1096.jpg", "height": H, "width": W, "id": 2},
    ]
    anns = [
        {
            "area": 600,
            "bbox": [5, 5, 20, 30],
            "category_id": 1,
            "id": 1,
            "image_id": 1,
            "iscrowd": 0,
            "keypoints": kps(21, list(range(15))),
            "segmentation": [[5, 5, 25, 5, 25, 35]],
        },
        {
            "area": 600,
            "bbox": [5, 5, 20, 30],
            "category_id": 1,
            "id": 2,
            "image_id": 2,
            "iscrowd": 0,
            "keypoints": [0] * 63,
            "segmentation": [[5, 5, 25, 5, 25, 35]],
        },
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "hand"}]}
    ann, img_dir = write_dataset(tmp_path, data)
    insts = read_coco(ann, img_dir, "onehand10k", "onehand10k")
    hand_rule = sum(
        1 for a in anns if not a["iscrowd"] and max(a["keypoints"]) > 0
    )  # mmpose OneHand10KDataset
    assert len(sample_instances(insts)) == hand_rule == mmpose_count(data) == 1
