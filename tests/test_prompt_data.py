"""data.prompt: prompt sources in crop coordinates, corruption, modality masking, batches, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multipose.data.collate import BATCH_DTYPES
from multipose.data.datamodule import MultiPoseDataModule
from multipose.data.prompts import PromptConfigError, PromptSettings

EXACT = {"noise": 0.0, "drop": 0.0, "swap": 0.0, "prompt_mask_prob": 0.0, "image_mask_prob": 0.0}


def _dm(world, prompt=None, **kw):
    from omegaconf import OmegaConf

    from conftest import compose

    cfg = compose("train", ["data=synthetic_small"])
    data = OmegaConf.to_container(cfg.data, resolve=False)
    datasets = data["datasets"]
    return MultiPoseDataModule(
        datasets=datasets,
        root=str(world),
        input_size=(64, 48),
        heatmap_size=(16, 12),
        batch_size=8,
        num_workers=0,
        seed=0,
        steps_per_epoch=3,
        prompt=prompt,
        **kw,
    )


def _crop_gt(sample):
    k = int(sample["num_keypoints"])
    return sample, k


def test_own_prompt_without_corruption_is_the_crop_ground_truth_and_leaves_the_sample_unchanged(tiny_world):
    plain = _dm(tiny_world)
    prompted = _dm(tiny_world, {**EXACT})
    plain.setup("fit")
    prompted.setup("fit")
    ds, pds = plain.train_datasets[0], prompted.train_datasets[0]
    layout = prompted.prompt_layout()
    for key in [(i, 100 + i) for i in range(4)]:
        a, out = ds.load(key)
        b = pds[key]
        for name in BATCH_DTYPES:  # paired baseline: image, targets, geometry are bit-identical
            assert torch.equal(a[name], b[name]), name
        k = 17
        kp = np.asarray(out["keypoints"])
        lab = kp[:, 2] > 0
        assert torch.equal(b["prompt_valid"][:k], torch.from_numpy(lab))
        torch.testing.assert_close(b["prompt_keypoints"][:k][lab, :2], torch.from_numpy(kp[lab, :2]))
        assert not b["prompt_valid"][k:].any()
        tags = [layout["tags"][t] for t in b["prompt_tags"][:k].tolist()]
        assert tags == list(plain.skeletons["syn_coco"].semantic)
        assert (b["prompt_skeletons"] == layout["skeletons"].index("coco")).all()
        assert bool(b["image_valid"])


def test_skeleton_source_maps_hidden_joints_through_the_crop_and_flip(tiny_world):
    """Prompting syn_coco with the hidden-GT 'coco' joints of its own figures (= its annotation) must give the
    same prompt as the own source: the image -> crop affine and the flip relabelling are right."""
    own = _dm(tiny_world, {**EXACT, "sources": {"own": 1.0}})
    hidden = _dm(
        tiny_world, {**EXACT, "sources": {"skeleton": 1.0}, "skeleton": "coco", "use_extra_gt": True}
    )
    own.setup("fit")
    hidden.setup("fit")
    flipped = 0
    for key in [(i, 7 * i) for i in range(8)]:
        a = own.train_datasets[0][key]
        b = hidden.train_datasets[0][key]
        flipped += int(own.train_datasets[0].load(key)[1]["flipped"])
        assert torch.equal(a["prompt_valid"], b["prompt_valid"])
        v = a["prompt_valid"]
        torch.testing.assert_close(a["prompt_keypoints"][v], b["prompt_keypoints"][v], atol=1e-3, rtol=0)
    assert flipped > 0  # the check covered flipped crops


def test_corruption_and_masking_rates(tiny_world):
    dm = _dm(
        tiny_world, {"noise": 0.05, "drop": 0.5, "swap": 0.0, "prompt_mask_prob": 0.5, "image_mask_prob": 0.5}
    )
    dm.setup("fit")
    ds = dm.train_datasets[0]
    masked_prompt = masked_image = both = kept = total = 0
    for i in range(40):
        s = ds[(i % len(ds), i)]
        any_valid = bool(s["prompt_valid"].any())
        masked_prompt += not any_valid
        masked_image += not bool(s["image_valid"])
        both += (not any_valid) and not bool(s["image_valid"])
        kept += int(s["prompt_valid"].sum())
        total += 17
    assert both == 0  # never both modalities
    assert 10 <= masked_prompt <= 30
    assert 3 <= masked_image <= 17  # 0.5 of the kept prompts
    assert kept < 0.4 * total  # half the prompts masked, half the joints of the rest dropped


def test_results_source_matches_records_by_box(tiny_world, tmp_path):
    dm0 = _dm(tiny_world)
    dm0.setup("fit")
    insts = dm0.train_datasets[0].instances
    rows = [
        {
            "image_id": int(r.image_id),
            "category_id": 1,
            "keypoints": np.asarray(r.keypoints).ravel().tolist(),
            "score": 0.9,
        }
        for r in insts
    ]
    for r in rows:  # detector scores 0.7 on every joint
        kp = np.asarray(r["keypoints"]).reshape(-1, 3)
        kp[:, 2] = np.where(kp[:, 2] > 0, 0.7, 0.0)
        r["keypoints"] = kp.ravel().tolist()
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(rows))
    dm = _dm(tiny_world, {**EXACT, "sources": {"results": 1.0}, "results": {"syn_coco": {"file": str(path)}}})
    dm.setup("fit")
    s, out = dm.train_datasets[0].load((0, 5))
    kp = np.asarray(out["keypoints"])
    lab = kp[:, 2] > 0
    torch.testing.assert_close(
        s["prompt_keypoints"][:17][lab, :2], torch.from_numpy(kp[lab, :2]), atol=1e-3, rtol=0
    )
    assert torch.allclose(s["prompt_keypoints"][:17][lab, 2], torch.tensor(0.7))


def test_batches_carry_padded_prompt_tensors(tiny_world):
    dm = _dm(tiny_world, {})
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["prompt_keypoints"].shape == (8, 17, 3) and b["prompt_valid"].dtype == torch.bool
    assert b["prompt_tags"].dtype == torch.int64 and b["image_valid"].shape == (8,)
    val = next(iter(dm.val_dataloader()[1]))
    assert val["prompt_valid"][:, 16:].sum() == 0  # mpii (16 joints) padded to 17
    assert val["image_valid"].all()  # no masking in validation


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"sources": {"skeleton": 1.0}, "skeleton": "coco"}, "use_extra_gt"),
        ({"sources": {"nope": 1.0}}, "sources"),
        ({"drop": 1.5}, "drop"),
        ({"sources": {"results": 1.0}}, "results"),
        ({"colour": 1}, "unknown keys"),
    ],
)
def test_bad_prompt_settings_name_the_field(cfg, field):
    with pytest.raises(PromptConfigError, match=field):
        PromptSettings.from_config(cfg)
