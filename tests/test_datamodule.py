"""MultiPoseDataModule / TopDownDataset / config validation / browse, on tiny on-disk fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from multipose.data.collate import BATCH_DTYPES, collate_samples
from multipose.data.config import DataConfigError
from multipose.data.datamodule import MultiPoseDataModule
from multipose.data.dataset import ImageReadError, TopDownDataset, read_rgb
from multipose.skeletons import get_skeleton

INPUT = (64, 48)
HEATMAP = (16, 12)


# ----------------------------------------------------------------------------------------- fixtures


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = rng.integers(0, 255, size=(h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _person(rng: np.random.Generator, k: int, w: int, h: int) -> tuple[np.ndarray, list[float]]:
    x0, y0 = rng.uniform(5, w / 2), rng.uniform(5, h / 2)
    bw, bh = rng.uniform(20, w / 2 - 5), rng.uniform(30, h / 2 - 5)
    kp = np.zeros((k, 3), np.float32)
    kp[:, 0] = rng.uniform(x0, x0 + bw, k)
    kp[:, 1] = rng.uniform(y0, y0 + bh, k)
    kp[:, 2] = rng.choice([0, 1, 2, 2, 2], k)
    kp[kp[:, 2] == 0, :2] = 0
    kp[0, 2] = 2  # at least one labelled keypoint
    kp[0, :2] = x0 + bw / 2, y0 + bh / 2
    return kp, [float(x0), float(y0), float(bw), float(bh)]


def make_coco(root: Path, name: str, split: str, n_images: int = 3, seed: int = 0, k: int = 17) -> None:
    rng = np.random.default_rng(seed)
    img_dir = root / name / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    w, h = 160, 120
    for i in range(n_images):
        fn = f"{i:04d}.jpg"
        cv2.imwrite(str(img_dir / fn), _image(rng, h, w))
        images.append({"id": i + 1, "file_name": fn, "width": w, "height": h})
        for j in range(2):
            kp, box = _person(rng, k, w, h)
            anns.append(
                {
                    "id": 100 * (i + 1) + j,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                    "num_keypoints": int((kp[:, 2] > 0).sum()),
                    "keypoints": kp.reshape(-1).tolist(),
                }
            )
    # one crowd region: kept for evaluation, never trained on
    anns.append(
        {
            "id": 999,
            "image_id": 1,
            "category_id": 1,
            "bbox": [1.0, 1.0, 30.0, 30.0],
            "area": 900.0,
            "iscrowd": 1,
            "num_keypoints": 0,
            "keypoints": [0] * (3 * k),
        }
    )
    ann_dir = root / name / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": 1, "name": "person"}]
    (ann_dir / f"{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )


def make_mpii(root: Path, name: str, split: str, n_images: int = 3, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    img_dir = root / name / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    w, h = 160, 120
    for i in range(n_images):
        fn = f"{i:04d}.jpg"
        cv2.imwrite(str(img_dir / fn), _image(rng, h, w))
        kp, box = _person(rng, 16, w, h)
        entries.append(
            {
                "image": fn,
                "joints": (kp[:, :2] + 1).tolist(),
                "joints_vis": (kp[:, 2] > 0).astype(int).tolist(),
                "center": [box[0] + box[2] / 2 + 1, box[1] + box[3] / 2 + 1],
                "scale": box[3] / 200,
                "headbox": [box[0], box[1], box[0] + 10, box[1] + 10],
            }
        )
    ann_dir = root / name / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / f"{split}.json").write_text(json.dumps(entries))


def entry(name: str, fmt: str, skeleton: str, count: int, **kw) -> dict:
    out = {
        "format": fmt,
        "skeleton": skeleton,
        "codec": "udp",
        "metric": "coco" if fmt != "mpii" else "pckh",
        "half_body": fmt != "mpii",
        "batch_count": count,
        "train": {"ann_file": f"{name}/annotations/train.json", "img_dir": f"{name}/images/train"},
        "val": {"ann_file": f"{name}/annotations/val.json", "img_dir": f"{name}/images/val"},
    }
    out.update(kw)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    for split, seed in (("train", 0), ("val", 10)):
        make_coco(root, "a", split, seed=seed)
        make_mpii(root, "b", split, seed=seed + 1)
    return root


def mix() -> dict:
    return {"a": entry("a", "coco", "coco", 3), "b": entry("b", "mpii", "mpii", 1)}


def make_dm(root: Path, **kw) -> MultiPoseDataModule:
    args = dict(
        datasets=mix(),
        root=str(root),
        input_size=INPUT,
        heatmap_size=HEATMAP,
        batch_size=4,
        mode="fixed",
        num_workers=0,
        seed=3,
        steps_per_epoch=5,
    )
    args.update(kw)
    return MultiPoseDataModule(**args)


def batches(dm: MultiPoseDataModule, n: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for i, b in enumerate(dm.train_dataloader()):
        if i == n:
            break
        out.append(b)
    return out


# ----------------------------------------------------------------------------------------- batches


def test_batch_contract_shapes_padding_and_counts(world):
    dm = make_dm(world)
    dm.setup("fit")
    assert dm.dataset_names == ["a", "b"] and dm.kmax == 17
    assert dm.skeletons["b"].num_keypoints == 16
    got = batches(dm, 3)
    assert len(got) == 3
    for b in got:
        assert set(b) == set(BATCH_DTYPES)
        for key, dtype in BATCH_DTYPES.items():
            assert b[key].dtype == dtype, key
            assert b[key].shape[0] == 4, key
        assert b["image"].shape == (4, 3, *INPUT)
        assert b["heatmap"].shape == (4, 17, *HEATMAP)
        assert b["keypoints"].shape == (4, 17, 3) and b["heatmap_weight"].shape == (4, 17)
        # exact per-dataset counts (3 + 1), dataset index <-> skeleton size
        assert Counter(b["dataset_idx"].tolist()) == {0: 3, 1: 1}
        assert b["num_keypoints"].tolist() == [17 if d == 0 else 16 for d in b["dataset_idx"].tolist()]
        for i in range(4):
            k = int(b["num_keypoints"][i])
            assert b["heatmap"][i, k:].abs().sum() == 0
            assert b["heatmap_weight"][i, k:].abs().sum() == 0
            assert b["keypoints"][i, k:].abs().sum() == 0
            # targets exist where weights are on (keypoints just outside the crop keep weight 1 with only the
            # Gaussian's tail, or nothing, on the map, as in mmpose); no target without weight
            on = b["heatmap_weight"][i, :k] > 0
            assert on.any()
            assert (b["heatmap"][i, :k][on].amax(dim=(-1, -2)) > 0.5).float().mean() >= 0.5
            assert (b["heatmap"][i, :k][~on] == 0).all()
        assert (b["ann_id"] > 0).all() and torch.isfinite(b["image"]).all()
        assert (b["bbox_score"] == 1).all()


def test_same_seed_bit_identical_with_and_without_workers(world):
    a = batches(make_dm(world, num_workers=0), 3)
    b = batches(make_dm(world, num_workers=2), 3)
    c = batches(make_dm(world, seed=4), 3)
    for x, y in zip(a, b):
        for key in BATCH_DTYPES:
            assert torch.equal(x[key], y[key]), key
    assert not all(torch.equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_position_state_resumes_the_stream(world):
    ref = batches(make_dm(world), 5)
    dm = make_dm(world)
    dm.setup("fit")
    dm.load_state_dict(
        {"batch_index": 3, "seed": 3, "mode": "fixed", "batch_size": 4, "dataset_names": ["a", "b"]}
    )
    resumed = batches(dm, 2)
    for x, y in zip(ref[3:], resumed):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["ann_id"], y["ann_id"])


def test_lightning_checkpoint_carries_consumed_position(world, tmp_path):
    """Workers prefetch ahead; the saved position must count batches the model consumed."""
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["ann_id"].clone())
            return (self.w - batch["image"].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def trainer(steps):
        return L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            use_distributed_sampler=False,
            default_root_dir=tmp_path,
            limit_val_batches=0,
        )

    dm = make_dm(world, num_workers=2, steps_per_epoch=4)
    model = Tiny()
    t = trainer(6)  # one full epoch of 4 + 2 batches of the next
    t.fit(model, datamodule=dm)
    assert dm.state_dict()["batch_index"] == 6
    ckpt = tmp_path / "mid.ckpt"
    t.save_checkpoint(ckpt)

    ref = make_dm(world, steps_per_epoch=4)
    expected = [b["ann_id"] for b in batches(ref, 4)] + [b["ann_id"] for b in batches(ref, 4)]
    assert all(torch.equal(a, b) for a, b in zip(model.seen, expected[:6]))

    dm2 = make_dm(world, num_workers=2, steps_per_epoch=4)
    model2 = Tiny()
    trainer(8).fit(model2, datamodule=dm2, ckpt_path=ckpt)
    assert [x.tolist() for x in model2.seen] == [x.tolist() for x in expected[6:8]]
    assert dm2.state_dict()["batch_index"] == 8


def test_val_loaders_one_per_dataset_with_crowd_in_records(world):
    dm = make_dm(world, val_batch_size=4)
    dm.setup("validate")
    loaders = dm.val_dataloader()
    assert len(loaders) == 2
    for d, loader in enumerate(loaders):
        seen = []
        for b in loader:
            assert (b["dataset_idx"] == d).all()
            assert (b["rotation"] == 0).all()
            seen += b["ann_id"].tolist()
        name = dm.dataset_names[d]
        records = dm.val_instances(name)
        non_crowd = [r.ann_id for r in records if not r.iscrowd]
        assert sorted(seen) == sorted(non_crowd)
    assert any(r.iscrowd for r in dm.val_instances("a"))
    # validation is deterministic
    a = next(iter(dm.val_dataloader()[0]))
    b = next(iter(dm.val_dataloader()[0]))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["heatmap"], b["heatmap"])


def test_val_shards_are_disjoint_without_padding(world):
    from multipose.data.datamodule import ShardSampler

    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))


def test_proportional_mode_ignores_counts(world):
    dm = make_dm(world, mode="proportional", batch_size=6)
    dm.setup("fit")
    b = batches(dm, 1)[0]
    assert b["image"].shape[0] == 6
    assert set(b["dataset_idx"].tolist()) <= {0, 1}


# ----------------------------------------------------------------------------------------- errors


def test_config_unknown_format_lists_valid_ones(world):
    bad = mix()
    bad["a"]["format"] = "cocoo"
    with pytest.raises(DataConfigError, match=r"datasets\.a\.format.*coco, coco_wholebody, mpii"):
        make_dm(world, datasets=bad)


def test_config_missing_annotation_file_names_dataset_key_and_path(world):
    bad = mix()
    bad["b"]["val"]["ann_file"] = "b/annotations/nope.json"
    with pytest.raises(DataConfigError) as err:
        make_dm(world, datasets=bad)
    msg = str(err.value)
    assert "datasets.b.val.ann_file" in msg and str(world / "b/annotations/nope.json") in msg


def test_config_counts_must_sum_to_batch_size(world):
    with pytest.raises(DataConfigError, match="sum to 4, but data.batch_size is 6"):
        make_dm(world, batch_size=6)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("skeleton", "cocco", r"datasets\.a\.skeleton.*unknown skeleton"),
        ("codec", "dark", r"valid codecs: msra, udp"),
        ("metric", "map", r"valid metrics: coco, pckh, pck"),
        ("batch_count", -2, r"batch_count must be an integer >= 0"),
        ("typo_key", 1, r"unknown key\(s\) \['typo_key'\]"),
    ],
)
def test_config_entry_errors(world, key, value, match):
    bad = mix()
    bad["a"][key] = value
    with pytest.raises(DataConfigError, match=match):
        make_dm(world, datasets=bad)


def test_world_size_must_divide_batch(world):
    dm = make_dm(world)
    dm.setup("fit")
    with pytest.raises(DataConfigError, match="not divisible by the world size 3"):
        dm.build_train_sampler(rank=0, world_size=3)


def test_truncated_jpeg_error_names_file_and_annotation(world, tmp_path):
    good = world / "a" / "images" / "train" / "0000.jpg"
    bad = tmp_path / "cut.jpg"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(bad)) is not None  # OpenCV alone would happily return a half-grey image
    with pytest.raises(ImageReadError, match=r"cut\.jpg \(annotation id 42\): truncated JPEG"):
        read_rgb(bad, ann_id=42)
    # through the dataset: the error names the file and the annotation id
    dm = make_dm(world)
    dm.setup("fit")
    ds = dm.train_datasets[0]
    inst = ds.instances[0]
    ds.instances[0] = type(inst)(**{**inst.__dict__, "image_path": str(bad)})
    with pytest.raises(ImageReadError, match=rf"cut\.jpg \(annotation id {inst.ann_id}\)"):
        ds[0]
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="not an image file"):
        read_rgb(garbage, ann_id=7)
    with pytest.raises(ImageReadError, match="cannot read image"):
        read_rgb(tmp_path / "missing.jpg", ann_id=7)


def test_empty_annotation_list_is_a_clear_error(world, tmp_path):
    root = tmp_path / "w"
    make_coco(root, "a", "train")
    make_coco(root, "a", "val")
    ann = root / "a" / "annotations" / "train.json"
    data = json.loads(ann.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["iscrowd"]]  # nothing trainable left
    ann.write_text(json.dumps(data))
    dm = make_dm(root, datasets={"a": entry("a", "coco", "coco", 4)})
    with pytest.raises(ValueError, match=rf"no usable train instance in {ann}"):
        dm.setup("fit")
    skel = get_skeleton("coco")
    with pytest.raises(ValueError, match="instance list is empty"):
        TopDownDataset([], skel, transform=None, codec=None, dataset_idx=0, kmax=17, name="a")


def test_collate_rejects_mismatched_padding():
    s1 = {k: torch.zeros(()) for k in BATCH_DTYPES}
    s2 = dict(s1)
    s1["heatmap"], s2["heatmap"] = torch.zeros(17, 2, 2), torch.zeros(16, 2, 2)
    with pytest.raises(ValueError, match="heatmap"):
        collate_samples([s1, s2])


def test_distributed_run_requires_lightning_not_to_replace_the_sampler(world):
    class FakeTrainer:
        global_rank, world_size = 0, 2

        class _accelerator_connector:  # noqa: N801
            use_distributed_sampler = True

    dm = make_dm(world)
    dm.setup("fit")
    dm.trainer = FakeTrainer()
    with pytest.raises(DataConfigError, match="use_distributed_sampler=False"):
        dm.train_dataloader()
    FakeTrainer._accelerator_connector.use_distributed_sampler = False
    FakeTrainer.global_rank = 1
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape[0] == 2  # half of the global batch of 4


# ----------------------------------------------------------------------------------------- synthetic world


@pytest.fixture(scope="module")
def synthetic_dm(tmp_path_factory) -> MultiPoseDataModule:
    """All five datasets of the tiny synthetic world (generated by prepare_data)."""
    from multipose.data.synthetic import world_datasets

    datasets = {}
    for d in world_datasets("tiny"):
        cfg = d.as_config()
        cfg.update(
            batch_count=2,
            codec="udp",
            metric="pckh" if d.format == "mpii" else "coco",
            half_body=d.format != "mpii",
        )
        datasets[d.name] = cfg
    root = tmp_path_factory.mktemp("syn") / "world"
    dm = MultiPoseDataModule(
        datasets=datasets,
        root=str(root),
        input_size=INPUT,
        heatmap_size=HEATMAP,
        batch_size=2 * len(datasets),
        mode="fixed",
        seed=0,
        steps_per_epoch=2,
        synthetic={"preset": "tiny", "seed": 0},
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_synthetic_world_batches_match_the_contract(synthetic_dm):
    dm = synthetic_dm
    ks = {n: s.num_keypoints for n, s in dm.skeletons.items()}
    assert dm.kmax == max(ks.values()) == 133
    b = batches(dm, 1)[0]
    B = dm.batch_size
    assert b["image"].shape == (B, 3, *INPUT) and b["heatmap"].shape == (B, 133, *HEATMAP)
    assert Counter(b["dataset_idx"].tolist()) == {d: 2 for d in range(len(ks))}
    for i in range(B):
        name = dm.dataset_names[int(b["dataset_idx"][i])]
        k = ks[name]
        assert int(b["num_keypoints"][i]) == k
        assert b["heatmap"][i, k:].abs().sum() == 0 and b["heatmap_weight"][i, k:].abs().sum() == 0
        assert b["keypoints"][i, k:].abs().sum() == 0
        assert b["heatmap_weight"][i, :k].sum() > 0
    # validation: one loader per dataset, own dataset index, records include what the evaluators need
    loaders = dm.val_dataloader()
    assert len(loaders) == len(ks)
    for d, loader in enumerate(loaders):
        vb = next(iter(loader))
        assert (vb["dataset_idx"] == d).all()
    assert all(dm.val_instances(n) for n in dm.dataset_names)
    assert dm.dataset_entry("syn_mpii").metric == "pckh"


def test_browse_grid_has_skeleton_colours(synthetic_dm, tmp_path):
    from multipose.data.browse import COLOURS, render_grid, save_grid

    grid = render_grid(synthetic_dm, n=6, split="train", seed=1)
    path = save_grid(grid, tmp_path / "browse.png")
    assert path.is_file() and path.stat().st_size > 5000
    png = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert png.shape == grid.shape and png.shape[0] >= 2 * INPUT[0]

    def count(colour):
        return int((np.abs(png.astype(int) - np.array(colour)).sum(-1) <= 3).sum())

    for side in ("left", "right", "centre", "decoded"):
        assert count(COLOURS[side]) > 20, side
    # the same seed renders the same grid; the val split renders too
    assert np.array_equal(grid, render_grid(synthetic_dm, n=6, split="train", seed=1))
    assert render_grid(synthetic_dm, n=3, split="val").shape[0] > 0


def test_browse_cli_composes_the_hydra_config(tmp_path):
    from multipose.data.browse import main

    out = tmp_path / "cli.png"
    path = main(["data=synthetic_small", f"paths.data_root={tmp_path}", "n=4", f"out={out}"])
    assert path == out and out.stat().st_size > 2000


def test_augmentation_options_reach_the_transform_and_typos_are_named(tmp_path):
    from multipose.data.config import DataConfigError
    from multipose.data.datamodule import MultiPoseDataModule
    from multipose.utils.compose import compose_config

    cfg = compose_config("train", [f"data.root={tmp_path}"])
    datasets = cfg.data.datasets
    dm = MultiPoseDataModule(
        datasets,
        root=str(tmp_path),
        input_size=(128, 96),
        heatmap_size=(32, 24),
        batch_size=32,
        synthetic={"config": "tiny"},
        augmentation={"rot_factor": 7.0, "half_body_prob": 0.5},
    )
    t_coco, t_mpii = dm._transform("syn_coco", True), dm._transform("syn_mpii", True)
    assert t_coco.rot_factor == 7.0 and t_coco.half_body_prob == 0.5
    assert t_mpii.half_body_prob == 0.0  # the MPII entry has half_body: false
    with pytest.raises(DataConfigError, match="rotation"):
        MultiPoseDataModule(
            datasets,
            root=str(tmp_path),
            batch_size=32,
            synthetic={"config": "tiny"},
            augmentation={"rotation": 10},
        )
