"""Serving a skeleton added to an ACAE file (multipose.bridges.acae_serve): the Predictor and the predict CLI
output it like a head, from every AE head's predictions -> latents -> the new joints."""

from __future__ import annotations

import json

import hydra
import numpy as np
import pytest
import torch

from conftest import compose
from multipose.bridges.acae_fit import (
    fit_acae,
    fit_affine_map,
    hidden_union,
    new_skeleton_keypoints,
    to_crop_units,
    val_dataset,
)
from multipose.bridges.acae_model import AEFileError, AffineCombiningAE, gather_union, save_ae
from multipose.bridges.acae_serve import load_added_skeletons
from multipose.inference import Predictor
from train_helpers import untrained_checkpoint


@pytest.fixture(scope="module")
def world(tiny_world, tmp_path_factory):
    """The smoke mix (syn_coco + syn_mpii heads) on the tiny world, a random smoke model saved as a checkpoint,
    and an AE file: an AE of the syn_coco head alone fitted on hidden ground truth, with ``syn_mpii`` added
    from the hidden MPII ground truth of the same training instances."""
    tmp = tmp_path_factory.mktemp("acae_serve")
    cfg = compose("train", ["+experiment=smoke", f"data.root={tiny_world}", "data.num_workers=0"])
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.setup("fit")
    ckpt = tmp / "model.ckpt"
    module = untrained_checkpoint(cfg, dm, ckpt)

    ae, _ = AffineCombiningAE.for_mix({"syn_coco": dm.skeletons["syn_coco"]}, merge="none", n_latent=12)
    train = [
        i for i in dm.train_datasets[dm.dataset_names.index("syn_coco")].instances if "mpii" in i.extra_gt
    ]
    pose, w = hidden_union(train, ae)
    fit_acae(pose, w, ae, lam=0.01, steps=300, val_fraction=0.0)
    box = torch.as_tensor(np.stack([np.asarray(i.bbox, np.float64) for i in train]))
    side = box[:, 2:].max(-1).values
    mpii = torch.as_tensor(np.stack([i.extra_gt["mpii"] for i in train]), dtype=torch.float64)
    target = to_crop_units(mpii, box[:, :2] + box[:, 2:] / 2, torch.stack([side, side], -1))
    with torch.no_grad():
        latents = ae.encode(pose)
    mapping = fit_affine_map(latents, target, (mpii[..., 2] > 0).double(), lam=0.001, iters=500)
    entry = {
        "skeleton": "mpii",
        "keypoints": list(dm.skeletons["syn_mpii"].keypoints),
        "weights": mapping.float(),
        "latents": "encoder",
    }
    ae_file = save_ae(tmp / "ae_mpii.pt", ae, {"extra_skeletons": {"syn_mpii": entry}})
    return {"dm": dm, "ckpt": ckpt, "ae_file": ae_file, "model": module.model.eval(), "ae": ae, "tmp": tmp}


def _batch(dm, name="syn_coco", n=16):
    ds = val_dataset(dm, name, dm.val_instances(name))
    samples = [ds[i] for i in range(min(n, len(ds)))]
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("image", "center", "scale", "heatmap")}
    return batch, ds.instances[: len(samples)]


class _GTHeads(Predictor):
    """Heads that predict the batch's ground truth: the syn_coco head's heatmaps are the crops' target heatmaps."""

    target: torch.Tensor

    def heatmaps(self, images, heads, prompt=None):
        return {h: self.target[:, :17] for h in heads}


def test_served_skeleton_beats_a_trivial_baseline_on_its_ground_truth(world):
    dm = world["dm"]
    added = load_added_skeletons(world["ae_file"], mix=dm.describe())
    assert list(added) == ["syn_mpii_acae"]  # the model has a syn_mpii head: the added one is renamed
    batch, insts = _batch(dm)
    predictor = _GTHeads(world["model"], dm.describe(), flip_test=False, added=added)
    predictor.target = batch["heatmap"]
    out = predictor.predict(batch["image"], batch["center"], batch["scale"], ["syn_mpii_acae"], use_udp=True)
    served = out["syn_mpii_acae"]
    assert served.heatmaps is None and served.keypoints.shape == (len(insts), 16, 3)
    gt = np.stack([i.extra_gt["mpii"] for i in insts]).astype(np.float64)
    vis = gt[..., 2] > 0
    size = np.stack([np.sqrt(i.bbox[2] * i.bbox[3]) for i in insts])[:, None]
    err = np.linalg.norm(served.keypoints[..., :2] - gt[..., :2], axis=-1) / size
    # trivial baseline: every MPII joint at the mean of the visible COCO ground truth (the person's centre)
    coco = np.stack([i.keypoints for i in insts]).astype(np.float64)
    cvis = coco[..., 2:3] > 0
    centre = (coco[..., :2] * cvis).sum(1, keepdims=True) / cvis.sum(1, keepdims=True).clip(1)
    base = np.linalg.norm(centre - gt[..., :2], axis=-1) / size
    assert err[vis].mean() < 0.5 * base[vis].mean(), (err[vis].mean(), base[vis].mean())
    assert np.all((served.keypoints[..., 2] >= 0) & (served.keypoints[..., 2] <= 1.01))


@pytest.mark.parametrize("flip", [True, False])
def test_served_keypoints_are_the_map_of_the_heads_latents(world, flip):
    dm = world["dm"]
    added = load_added_skeletons(world["ae_file"], ["syn_mpii"], mix=dm.describe())
    assert added["syn_mpii_acae"].latents == "encoder"
    predictor = Predictor(world["model"], dm.describe(), flip_test=flip, added=added)
    batch, _ = _batch(dm, "syn_mpii", 4)
    out = predictor.predict(
        batch["image"], batch["center"], batch["scale"], ["syn_coco", "syn_mpii_acae"], use_udp=True
    )
    heads = predictor.predict(batch["image"], batch["center"], batch["scale"], ["syn_coco"], use_udp=True)
    np.testing.assert_array_equal(out["syn_coco"].keypoints, heads["syn_coco"].keypoints)
    kp = torch.as_tensor(heads["syn_coco"].keypoints, dtype=torch.float64)
    ae = added["syn_mpii_acae"].ae
    pose, w = gather_union({"syn_coco": kp[..., :2]}, {"syn_coco": kp[..., 2]}, ae.index_map, ae.n_joints)
    with torch.no_grad():
        entry = added["syn_mpii_acae"]
        coords, scores = new_skeleton_keypoints(ae, entry.mapping, pose, w, entry.latents)
    np.testing.assert_allclose(out["syn_mpii_acae"].keypoints[..., :2], coords.numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(out["syn_mpii_acae"].keypoints[..., 2], scores.numpy(), rtol=0, atol=1e-6)
    other = Predictor(world["model"], dm.describe(), flip_test=not flip, added=added).predict(
        batch["image"], batch["center"], batch["scale"], ["syn_mpii_acae"], use_udp=True
    )
    assert not np.allclose(other["syn_mpii_acae"].keypoints, out["syn_mpii_acae"].keypoints)


def test_unknown_added_skeleton_and_foreign_heads_are_named(world, tmp_path):
    dm = world["dm"]
    with pytest.raises(AEFileError, match=r"no added skeleton \['lsp'\]; the file has \['syn_mpii'\]"):
        load_added_skeletons(world["ae_file"], ["lsp"])
    bare = save_ae(tmp_path / "bare.pt", world["ae"])
    with pytest.raises(AEFileError, match="no added skeleton; write one with"):
        load_added_skeletons(bare)
    other = {"datasets": {"syn_aic": {"skeleton": "aic"}}, "input_size": [64, 48], "heatmap_size": [16, 12]}
    with pytest.raises(AEFileError, match=r"lacks or differs on \{'syn_coco': 'coco'\}"):
        load_added_skeletons(world["ae_file"], mix=other)
    added = load_added_skeletons(world["ae_file"], mix=dm.describe())
    with pytest.raises(ValueError, match=r"no head or added skeleton \['lsp'\]"):
        Predictor(world["model"], dm.describe(), added=added).predict(
            torch.zeros(1, 3, 64, 48), np.zeros((1, 2)), np.ones((1, 2)), ["lsp"], use_udp=True
        )


def test_predict_cli_serves_the_added_skeleton(world, tiny_world, tmp_path, capsys):
    from multipose.predict import main

    image = sorted((tiny_world / "syn_coco" / "images" / "val").iterdir())[0]
    out = tmp_path / "out"
    argv = [
        str(world["ckpt"]),
        str(image),
        "--out",
        str(out),
        "--no-progress",
        "--acae",
        str(world["ae_file"]),
    ]
    assert main([*argv, "--skeleton", "syn_mpii_acae"]) == 0
    rows = json.loads((out / "results_mpii.json").read_text())
    assert rows and all(len(r["keypoints"]) == 16 * 3 for r in rows)
    assert not (out / "results_coco.json").exists()
    assert main([*argv, "--skeleton", "all", "--out", str(tmp_path / "all")]) == 0
    names = sorted(p.name for p in (tmp_path / "all").glob("results_*.json"))
    assert names == ["results_coco.json", "results_mpii_syn_mpii.json", "results_mpii_syn_mpii_acae.json"]
    with pytest.raises(SystemExit, match="no added skeleton"):
        main([*argv[:-1], str(save_ae(tmp_path / "bare.pt", world["ae"])), "--skeleton", "mpii"])
