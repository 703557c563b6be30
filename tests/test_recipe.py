"""Recipe numbers: `+experiment=full_mix backbone=vit_<size>` composes to the official ViTPose++ numbers.

The constants below are copied from the official ViTPose repository's ``vitPose+_{small,base,large,huge}_coco+aic+
mpii+ap10k+apt36k+wholebody_256x192_udp.py`` configs (AdamW lr 1e-3, ``samples_per_gpu=128`` on 8 GPUs, weight
decay 0.1, ``layer_decay_rate`` and ``drop_path_rate`` per size) and the single-task ``ViTPose_*_coco_256x192.py``
configs (lr 5e-4 at 64 x 8 = 512; H decays by 0.85 there).
"""

from __future__ import annotations

import pytest

from conftest import compose

VITPOSE_PP_LR = 1e-3
VITPOSE_PP_TOTAL_BATCH = 128 * 8
VITPOSE_LR, VITPOSE_TOTAL_BATCH = 5e-4, 64 * 8
# size: (drop path, layer decay ViTPose++, layer decay single-task ViTPose)
RECIPE = {
    "vit_small": (0.1, 0.8, 0.8),
    "vit_base": (0.3, 0.75, 0.75),
    "vit_large": (0.5, 0.8, 0.8),
    "vit_huge": (0.55, 0.8, 0.85),
}


@pytest.mark.parametrize("size", sorted(RECIPE))
def test_full_mix_recipe_per_size(size):
    drop_path, decay_pp, _ = RECIPE[size]
    cfg = compose("train", ["+experiment=full_mix", f"backbone={size}"])
    assert cfg.backbone.name == size and cfg.backbone.ffn == "ps"
    assert cfg.backbone.drop_path_rate == pytest.approx(drop_path)
    assert cfg.optim.layer_decay == pytest.approx(decay_pp)  # what the optimiser reads
    assert cfg.optim.weight_decay == pytest.approx(0.1)
    # per-sample LR equals the official one whatever data.batch_size is (linear scaling on)
    assert cfg.optim.scale_lr is True
    assert cfg.optim.lr / cfg.optim.base_batch_size == pytest.approx(VITPOSE_PP_LR / VITPOSE_PP_TOTAL_BATCH)
    scaled = cfg.optim.lr * cfg.data.batch_size / cfg.optim.base_batch_size
    assert scaled == pytest.approx(VITPOSE_PP_LR * cfg.data.batch_size / VITPOSE_PP_TOTAL_BATCH)
    # every head on the whole per-GPU batch: BatchNorm statistics of the mixed batch, as the official code
    assert cfg.model.head_bn == "batch"


@pytest.mark.parametrize("size", sorted(RECIPE))
def test_single_task_recipe_per_size(size):
    drop_path, _, decay_single = RECIPE[size]
    cfg = compose("train", [f"backbone={size}", "optim=vitpose"])
    assert cfg.backbone.drop_path_rate == pytest.approx(drop_path)
    assert cfg.optim.layer_decay == pytest.approx(decay_single)
    assert cfg.optim.lr / cfg.optim.base_batch_size == pytest.approx(VITPOSE_LR / VITPOSE_TOTAL_BATCH)


def test_full_mix_model_config_carries_drop_path_not_recipe_keys():
    """The model config built from the full_mix composition keeps drop path (it shapes training) and leaves
    layer decay / init (optimiser and start-up settings) out."""
    from types import SimpleNamespace

    from multipose.models.model_config import model_config_from_hydra
    from multipose.skeletons import get_skeleton

    cfg = compose("train", ["+experiment=full_mix", "backbone=vit_large"])
    names = list(cfg.data.datasets)
    mix = SimpleNamespace(
        dataset_names=names,
        skeletons={n: get_skeleton(cfg.data.datasets[n].skeleton) for n in names},
        input_size=list(cfg.data.input_size),
        heatmap_size=list(cfg.data.heatmap_size),
    )
    d = model_config_from_hydra(cfg, mix).to_dict()
    assert d["backbone"]["drop_path_rate"] == pytest.approx(0.5)
    assert d["backbone"]["num_experts"] == len(names) == 6 and d["backbone"]["ffn"] == "ps"
    assert "layer_decay" not in d["backbone"] and "init" not in d["backbone"]
