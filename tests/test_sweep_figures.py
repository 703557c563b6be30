"""Bridge figures for the dashboards (multipose.viz.figures): a bridge's figures(lit, batch) become RGB pictures,
called on a small batch of every dataset's kept validation crops, in eval mode and without gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multipose.viz.figures import bridge_figures, figure_stem, figure_to_rgb, figures_batch


def test_figure_to_rgb_accepts_images_and_names_bad_shapes():
    grey = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    rgb = figure_to_rgb(grey)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8 and rgb[-1, -1, 0] == 255
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert figure_to_rgb(rgba).shape == (2, 2, 3)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        figure_to_rgb(np.zeros((2, 2, 5)))


def test_figures_batch_takes_the_first_crops_of_every_dataset_with_their_index():
    def crops(n, k, fill):
        return {
            "image": torch.full((n, 3, 8, 6), fill),
            "keypoints": torch.zeros(n, k, 3),
            "center": torch.zeros(n, 2),
        }

    batch = figures_batch({"b": crops(3, 16, 2.0), "a": crops(1, 17, 1.0)}, ["a", "b"], per_dataset=2)
    assert batch["image"].shape[0] == 3
    assert batch["dataset_idx"].tolist() == [1, 1, 0]  # mix order index of each crop's dataset
    assert batch["image"][2].mean() == 1.0
    assert "keypoints" not in batch  # different skeleton widths are not stacked
    assert figures_batch({}, ["a"]) is None


class _Bridge(torch.nn.Module):
    def __init__(self, fail=False):
        super().__init__()
        self.fail = fail
        self.seen = None

    def figures(self, lit, batch):
        if self.fail:
            raise RuntimeError("no figure")
        self.seen = (lit.training, torch.is_grad_enabled(), batch["image"].shape[0])
        return {"maps": np.full((5, 7, 3), 9, np.uint8), "posebh/prototypes": np.zeros((4, 4, 3), np.uint8)}


class _Lit(torch.nn.Module):
    def __init__(self, bridges):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.bridges = torch.nn.ModuleDict(bridges)


def test_bridge_figures_runs_each_bridge_in_eval_mode_without_grad_and_skips_failures():
    good, bad = _Bridge(), _Bridge(fail=True)
    lit = _Lit({"posebh": good, "broken": bad}).train()
    batch = {"image": torch.zeros(2, 3, 8, 6), "dataset_idx": torch.tensor([0, 1])}
    out = bridge_figures(lit, batch)
    assert list(out) == ["posebh_maps", "posebh_prototypes"] and out["posebh_maps"].shape == (5, 7, 3)
    assert good.seen == (False, False, 2)
    assert lit.training  # the training mode is restored
    assert bridge_figures(_Lit({}), batch) == {} and bridge_figures(lit, None) == {}


def test_figure_names_become_flat_file_stems():
    assert figure_stem("posebh", "posebh/similarity") == "posebh_similarity"
    assert figure_stem("posebh", "maps/a") == "posebh_maps_a"
    assert figure_stem("acae", "acae_codes") == "acae_codes"
