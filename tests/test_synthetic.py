"""The synthetic multi-skeleton world: genuine layouts, determinism, honest labels, atomic manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from multipose.data.synthetic import (
    WorldConfig,
    ensure_world,
    generate_world,
    world_datasets,
    world_is_current,
)
from multipose.data.synthetic import world as world_mod
from multipose.skeletons import get_skeleton

REPO = Path(__file__).resolve().parents[1]
HUMAN = ("coco", "aic", "mpii", "coco_wholebody")


def _small(train: int = 4, val: int = 2, names: tuple[str, ...] | None = None) -> WorldConfig:
    base = WorldConfig.preset("tiny")
    ds = tuple(
        dataclasses.replace(d, train_instances=train, val_instances=val)
        for d in base.datasets
        if names is None or d.name in names
    )
    return dataclasses.replace(base, datasets=ds)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("syn") / "world", "tiny", seed=0)


def _load(root: Path, name: str, split: str = "train"):
    return json.loads((root / name / "annotations" / f"{split}.json").read_text())


def _human_anns(root: Path) -> list[dict]:
    """Every human annotation of the world (COCO-like sets and MPII entries), train and val."""
    out = []
    for name in ("syn_coco", "syn_aic", "syn_wholebody", "syn_mpii"):
        for split in ("train", "val"):
            data = _load(root, name, split)
            out += data if isinstance(data, list) else data["annotations"]
    return out


def _kp(flat: list[float]) -> np.ndarray:
    return np.asarray(flat, dtype=np.float64).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------- layout


def test_tree_manifest_and_entries(world: Path):
    man = json.loads((world / "world.json").read_text())
    assert man["version"] == world_mod.GENERATOR_VERSION and man["seed"] == 0
    entries = world_datasets("tiny")
    assert [e.name for e in entries] == ["syn_coco", "syn_aic", "syn_mpii", "syn_wholebody", "syn_ap10k"]
    for e in entries:
        for split, ann, img_dir in (
            ("train", e.train_ann, e.train_img_dir),
            ("val", e.val_ann, e.val_img_dir),
        ):
            assert (world / ann).is_file()
            jpgs = sorted((world / img_dir).glob("*.jpg"))
            assert len(jpgs) == man["datasets"][e.name][split]["images"] > 0
            assert jpgs[0].read_bytes()[:2] == b"\xff\xd8"  # genuine JPEG
        tiny = WorldConfig.preset("tiny")
        spec = next(d for d in tiny.datasets if d.name == e.name)
        assert man["datasets"][e.name]["train"]["instances"] == spec.train_instances
        assert man["datasets"][e.name]["val"]["instances"] == spec.val_instances


def test_entries_match_the_hydra_data_config():
    cfg = yaml.safe_load((REPO / "conf" / "data" / "synthetic.yaml").read_text())
    by_name = {e.name: e.as_config() for e in world_datasets("default")}
    assert set(cfg["datasets"]) == set(by_name)
    for name, entry in cfg["datasets"].items():
        want = by_name[name]
        assert entry["format"] == want["format"] and entry["skeleton"] == want["skeleton"], name
        for split in ("train", "val"):
            assert entry[split]["ann_file"] == want[split]["ann_file"], name
            assert entry[split]["img_dir"] == want[split]["img_dir"], name


def test_coco_layout(world: Path):
    for name, skel in (("syn_coco", "coco"), ("syn_aic", "aic"), ("syn_ap10k", "ap10k")):
        data = _load(world, name)
        assert set(data) >= {"images", "annotations", "categories"}
        sk = get_skeleton(skel)
        for cat in data["categories"]:
            assert cat["keypoints"] == list(sk.keypoints)
            assert all(1 <= a <= sk.num_keypoints and 1 <= b <= sk.num_keypoints for a, b in cat["skeleton"])
        image_ids = {im["id"] for im in data["images"]}
        cat_ids = {c["id"] for c in data["categories"]}
        ids = [a["id"] for a in data["annotations"]]
        assert len(set(ids)) == len(ids)
        for a in data["annotations"]:
            assert a["image_id"] in image_ids and a["category_id"] in cat_ids
            assert len(a["keypoints"]) == 3 * sk.num_keypoints
            assert a["num_keypoints"] == int((_kp(a["keypoints"])[:, 2] > 0).sum())
            assert a["iscrowd"] == 0 and len(a["bbox"]) == 4
    assert len(_load(world, "syn_ap10k")["categories"]) > 1  # several species, like AP-10K


def test_wholebody_layout(world: Path):
    data = _load(world, "syn_wholebody")
    assert data["categories"][0]["keypoints"] == list(get_skeleton("coco").keypoints)
    lengths = {"keypoints": 17, "foot_kpts": 6, "face_kpts": 68, "lefthand_kpts": 21, "righthand_kpts": 21}
    labelled_face = 0
    for a in data["annotations"]:
        for field, k in lengths.items():
            assert len(a[field]) == 3 * k, field
        for part in ("face", "lefthand", "righthand", "foot"):
            assert isinstance(a[f"{part}_valid"], bool)
            if part != "foot":
                assert len(a[f"{part}_box"]) == 4
            if not a[f"{part}_valid"]:
                assert not any(a[f"{part}_kpts" if part != "face" else "face_kpts"]), part
        labelled_face += a["face_valid"]
        # the body part fields agree with the full 133-point ground truth where labelled
        full = _kp(a["gt_all"]["coco_wholebody"])
        assert np.allclose(_kp(a["keypoints"]), full[:17])
        assert np.allclose(_kp(a["foot_kpts"]), full[17:23])
    assert labelled_face > 0  # faces are placed and labelled when they face the camera


def test_mpii_layout(world: Path):
    for split in ("train", "val"):
        data = _load(world, "syn_mpii", split)
        assert isinstance(data, list) and data
        images = {p.name for p in (world / "syn_mpii" / "images" / split).glob("*.jpg")}
        for e in data:
            assert e["image"] in images
            joints, vis = np.asarray(e["joints"]), np.asarray(e["joints_vis"])
            assert joints.shape == (16, 2) and vis.shape == (16,)
            assert set(vis.tolist()) <= {0, 1}
            assert np.all(joints[vis == 0] == -1)
            assert len(e["center"]) == 2 and len(e["headbox"]) == 4
            x1, y1, x2, y2 = e["headbox"]
            assert x2 > x1 and y2 > y1
            # scale = person height / 200 (mmpose convention): compare with the labelled joints' span
            gt = _kp(e["gt_all"]["mpii"])
            lab = gt[gt[:, 2] > 0]
            span = np.ptp(lab[:, :2], axis=0).max()
            assert 0.4 * e["scale"] * 200 < span < 1.1 * e["scale"] * 200
            # head box ~ head size: much smaller than the person
            assert (x2 - x1) < 0.3 * e["scale"] * 200


# ---------------------------------------------------------------------------------------------- determinism


def test_same_seed_byte_identical_and_other_seed_differs(tmp_path: Path):
    cfg = _small()
    a = generate_world(tmp_path / "a", cfg, seed=3)
    b = generate_world(tmp_path / "b", cfg, seed=3)
    c = generate_world(tmp_path / "c", cfg, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ann = Path("syn_coco/annotations/train.json")
    assert (a / ann).read_bytes() != (c / ann).read_bytes()


def test_workers_do_not_change_the_output(tmp_path: Path):
    cfg = _small(6, 2, names=("syn_coco",))
    a = generate_world(tmp_path / "serial", cfg, seed=1, workers=1)
    b = generate_world(tmp_path / "pool", cfg, seed=1, workers=2)
    for p in a.rglob("*"):
        if p.is_file():
            assert p.read_bytes() == (b / p.relative_to(a)).read_bytes(), p


# ---------------------------------------------------------------------------------------------- honest labels


def _all_coco_like(world: Path):
    for name in ("syn_coco", "syn_aic", "syn_wholebody", "syn_ap10k"):
        for split in ("train", "val"):
            data = _load(world, name, split)
            yield name, data


def test_keypoints_inside_image_and_boxes_honest(world: Path):
    seen_v = set()
    for _, data in _all_coco_like(world):
        size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        for a in data["annotations"]:
            w, h = size[a["image_id"]]
            for field in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
                if field not in a:
                    continue
                k = _kp(a[field])
                lab = k[k[:, 2] > 0]
                assert np.all((lab[:, 0] >= -0.5) & (lab[:, 0] <= w - 0.5)), field
                assert np.all((lab[:, 1] >= -0.5) & (lab[:, 1] <= h - 0.5)), field
                assert np.all(k[k[:, 2] == 0, :2] == 0)
                seen_v |= set(k[:, 2].astype(int).tolist())
            x, y, bw, bh = a["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
            assert 0 < a["area"] <= bw * bh
            vis = _kp(a["keypoints"])
            vis = vis[vis[:, 2] == 2]
            # a seen keypoint lies on the figure's visible pixels, hence (within a pixel) inside its box
            assert np.all((vis[:, 0] >= x - 1.5) & (vis[:, 0] <= x + bw + 0.5))
            assert np.all((vis[:, 1] >= y - 1.5) & (vis[:, 1] <= y + bh + 0.5))
    assert {1, 2} <= seen_v  # occluded and visible points both occur


def test_gt_all_has_every_applicable_skeleton(world: Path):
    for name, data in _all_coco_like(world):
        own = {"syn_coco": "coco", "syn_aic": "aic", "syn_wholebody": "coco_wholebody", "syn_ap10k": "ap10k"}[
            name
        ]
        want = ("ap10k",) if name == "syn_ap10k" else HUMAN
        for a in data["annotations"]:
            assert tuple(a["gt_all"]) == want
            for s in want:
                assert len(a["gt_all"][s]) == 3 * get_skeleton(s).num_keypoints
            if own != "coco_wholebody":
                assert a["gt_all"][own] == a["keypoints"]
    for e in _load(world, "syn_mpii"):
        assert tuple(e["gt_all"]) == HUMAN
        gt = _kp(e["gt_all"]["mpii"])
        # MPII joints are 1-based (MATLAB), gt_all is 0-based image pixels like every other format
        assert np.allclose(gt[gt[:, 2] > 0, :2] + 1.0, np.asarray(e["joints"])[gt[:, 2] > 0])


def test_left_right_follow_the_facing(world: Path):
    """Front views (both eyes seen) show the figure's left shoulder on the image right; back views (eyes
    hidden by the head, both ears seen) show it on the image left. Rotations stay well under 90 deg."""
    coco = get_skeleton("coco").keypoints
    li, ri, le, re_ = (coco.index(n) for n in ("left_shoulder", "right_shoulder", "left_eye", "right_eye"))
    lear, rear = coco.index("left_ear"), coco.index("right_ear")
    front, back = [], []
    for a in _human_anns(world):
        k = _kp(a["gt_all"]["coco"])
        if k[li, 2] == 0 or k[ri, 2] == 0:
            continue
        if k[le, 2] == 2 and k[re_, 2] == 2:
            front.append(k[li, 0] > k[ri, 0])
        elif k[le, 2] == 1 and k[re_, 2] == 1 and k[lear, 2] == 2 and k[rear, 2] == 2:
            back.append(k[li, 0] < k[ri, 0])
    assert len(front) >= 30
    assert np.mean(front) >= 0.95
    if len(back) >= 3:
        assert np.mean(back) >= 0.8


def test_datasets_disagree_on_the_same_joint(world: Path):
    """AIC hips sit higher on the torso than COCO hips (MPII in between); AIC's head top is lower than
    MPII's. Measured along each figure's own body axis, from the same figure's ground truth."""
    coco, aic, mpii = (get_skeleton(s).keypoints for s in ("coco", "aic", "mpii"))
    d_aic, d_mpii, d_head = [], [], []
    for a in _human_anns(world):
        g = {s: _kp(a["gt_all"][s]) for s in ("coco", "aic", "mpii")}
        for side in ("left", "right"):
            sh = g["coco"][coco.index(f"{side}_shoulder")]
            hc = g["coco"][coco.index(f"{side}_hip")]
            ha = g["aic"][aic.index(f"{side}_hip")]
            hm = g["mpii"][mpii.index(f"{side}_hip")]
            if min(sh[2], hc[2], ha[2], hm[2]) == 0:
                continue
            axis = hc[:2] - sh[:2]
            length = np.linalg.norm(axis)
            axis = axis / length
            d_aic.append(float((hc[:2] - ha[:2]) @ axis) / length)  # > 0: AIC hip above COCO hip
            d_mpii.append(float((hc[:2] - hm[:2]) @ axis) / length)
        top_m, top_a = g["mpii"][mpii.index("head_top")], g["aic"][aic.index("head_top")]
        neck = g["aic"][aic.index("neck")]
        if min(top_m[2], top_a[2], neck[2]) > 0:
            d_head.append(np.linalg.norm(top_m[:2] - neck[:2]) - np.linalg.norm(top_a[:2] - neck[:2]))
    assert len(d_aic) >= 30 and len(d_head) >= 15
    assert np.mean(np.asarray(d_aic) > 0) >= 0.95 and np.mean(d_aic) > 0.1
    assert 0 < np.mean(d_mpii) < np.mean(d_aic)
    assert np.mean(np.asarray(d_head) > 0) >= 0.95


def test_domains_differ(world: Path):
    """Datasets look different: mean colour statistics of their images are not the same."""
    import cv2

    stats = {}
    for name in ("syn_aic", "syn_wholebody", "syn_ap10k"):
        imgs = [cv2.imread(str(p)) for p in sorted((world / name / "images" / "train").glob("*.jpg"))]
        hsv = np.concatenate([cv2.cvtColor(i, cv2.COLOR_BGR2HSV).reshape(-1, 3) for i in imgs]).astype(float)
        stats[name] = hsv.mean(0)
    # the nature domain is greener (OpenCV hue ~ 25-75) than the bluish studio domain
    assert abs(stats["syn_ap10k"][0] - stats["syn_wholebody"][0]) > 10


# ---------------------------------------------------------------------------------------------- manifest


def test_ensure_world_is_a_no_op_when_current_and_regenerates_when_stale(tmp_path: Path, monkeypatch):
    cfg = _small(2, 1, names=("syn_coco", "syn_mpii"))
    root = tmp_path / "w"
    ensure_world(root, cfg, seed=0)
    assert world_is_current(root, cfg, seed=0)
    stamp = (root / "world.json").stat().st_mtime_ns
    calls = []
    real = world_mod.generate_world
    monkeypatch.setattr(world_mod, "generate_world", lambda *a, **k: calls.append(1) or real(*a, **k))
    ensure_world(root, cfg, seed=0)
    assert calls == [] and (root / "world.json").stat().st_mtime_ns == stamp
    # another seed -> regenerated for that seed
    ensure_world(root, cfg, seed=1)
    assert len(calls) == 1 and json.loads((root / "world.json").read_text())["seed"] == 1
    # a new generator version -> regenerated
    monkeypatch.setattr(world_mod, "GENERATOR_VERSION", "999")
    assert not world_is_current(root, cfg, seed=1)
    ensure_world(root, cfg, seed=1)
    assert len(calls) == 2 and json.loads((root / "world.json").read_text())["version"] == "999"
    # a missing image -> regenerated
    next((root / "syn_coco" / "images" / "train").glob("*.jpg")).unlink()
    assert not world_is_current(root, cfg, seed=1)
    ensure_world(root, cfg, seed=1)
    assert len(calls) == 3 and world_is_current(root, cfg, seed=1)


def test_interrupted_generation_leaves_no_half_world(tmp_path: Path, monkeypatch):
    cfg = _small(3, 1)
    root = tmp_path / "w"
    real = world_mod._render_task
    done = []

    def flaky(task):
        if len(done) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        done.append(task)
        return real(task)

    monkeypatch.setattr(world_mod, "_render_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_world(root, cfg, seed=0, workers=1)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder left behind
    # an existing world survives an interrupted regeneration untouched
    monkeypatch.setattr(world_mod, "_render_task", real)
    generate_world(root, cfg, seed=0, workers=1)
    before = (root / "syn_coco" / "annotations" / "train.json").read_bytes()
    done.clear()
    monkeypatch.setattr(world_mod, "_render_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        ensure_world(root, cfg, seed=5)
    assert world_is_current(root, cfg, seed=0)
    assert (root / "syn_coco" / "annotations" / "train.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["w"]


def test_refuses_to_replace_a_folder_that_is_not_a_world(tmp_path: Path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic world"):
        generate_world(root, _small(1, 1, names=("syn_coco",)), overwrite=True)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_world(root, _small(1, 1, names=("syn_coco",)))
    assert (root / "notes.txt").read_text() == "keep me"


def test_bad_config_names_the_field():
    base = WorldConfig.preset("tiny")
    bad = dataclasses.replace(base.datasets[0], skeleton="halpe")
    with pytest.raises(ValueError, match="halpe"):
        dataclasses.replace(base, datasets=(bad,))
    with pytest.raises(ValueError, match="preset"):
        WorldConfig.preset("huge")


def test_cli_reports_what_it_wrote(tmp_path: Path, capsys):
    from multipose.data.synthetic.__main__ import main

    assert main(["--out", str(tmp_path / "cli"), "--preset", "tiny", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "syn_wholebody" in out and "generated in" in out
    assert json.loads((tmp_path / "cli" / "world.json").read_text())["seed"] == 2
    assert main(["--out", str(tmp_path / "cli"), "--preset", "tiny"]) == 2  # exists, no --overwrite


def test_ensure_world_accepts_the_data_config_mapping(tmp_path: Path):
    """The DataModule calls ``ensure_world(root, **data.synthetic)`` with ``{preset, seed}``."""
    root = ensure_world(tmp_path / "w", **{"preset": "tiny", "seed": 7})
    assert world_is_current(root, "tiny", seed=7)
    with pytest.raises(ValueError, match="either"):
        ensure_world(tmp_path / "w", WorldConfig.preset("tiny"), preset="tiny")


def test_readers_recover_hidden_ground_truth_in_image_pixels(world: Path):
    """Reading the genuine files back gives, for labelled joints, exactly the hidden ground truth of the
    dataset's own skeleton (MPII's 1-based coordinates included), and every record carries extra_gt."""
    from multipose.data.formats import read_coco, read_mpii

    mpii = read_mpii(
        world / "syn_mpii/annotations/val.json", world / "syn_mpii/images/val", "mpii", "syn_mpii"
    )
    coco = read_coco(
        world / "syn_coco/annotations/val.json", world / "syn_coco/images/val", "coco", "syn_coco"
    )
    for records, own in ((mpii, "mpii"), (coco, "coco")):
        assert records
        for inst in records:
            assert set(HUMAN) <= set(inst.extra_gt)
            lab = inst.keypoints[:, 2] > 0
            assert np.allclose(inst.keypoints[lab, :2], inst.extra_gt[own][lab, :2], atol=0.02)
