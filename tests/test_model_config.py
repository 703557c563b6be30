"""The one model-config type: built from Hydra + the data mix, round-trips through checkpoints, reads old dicts."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from multipose.models.build import model_from_config
from multipose.models.model_config import ModelConfig, ModelConfigError, model_config_from_hydra
from multipose.skeletons import get_skeleton


def _mix(cfg):
    names = list(cfg.data.datasets)
    return SimpleNamespace(
        dataset_names=names,
        skeletons={n: get_skeleton(cfg.data.datasets[n].skeleton) for n in names},
        input_size=list(cfg.data.input_size),
        heatmap_size=list(cfg.data.heatmap_size),
    )


def _todays_train_dict(cfg, mix) -> dict:
    """The dict ``train.build_model_config`` stored in checkpoints before ModelConfig existed (kept verbatim
    here so old checkpoints stay loadable)."""
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("layer_decay_multi", None)  # a key the backbone group gained later
    backbone["img_size"] = list(mix.input_size)
    backbone["num_experts"] = len(mix.dataset_names)
    return {
        "backbone": backbone,
        "head": OmegaConf.to_container(cfg.head, resolve=True),
        "heads": {
            n: {"skeleton": mix.skeletons[n].name, "num_keypoints": mix.skeletons[n].num_keypoints}
            for n in mix.dataset_names
        },
        "heatmap_size": list(mix.heatmap_size),
    }


@pytest.mark.parametrize("overrides", [["+experiment=smoke"], ["+experiment=synthetic_moe"]])
def test_old_dicts_load_and_build_the_same_network(overrides):
    cfg = compose("train", overrides)
    mix = _mix(cfg)
    old = _todays_train_dict(cfg, mix)
    assert "layer_decay" in old["backbone"] and "init" in old["backbone"]  # really today's format
    new = model_config_from_hydra(cfg, mix)
    assert ModelConfig.from_dict(old) == new
    torch.manual_seed(0)
    a = model_from_config(old)
    torch.manual_seed(0)
    b = model_from_config(new.to_dict())
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.backbone.config == b.backbone.config


def test_round_trip_and_plain_containers():
    cfg = compose("train", ["+experiment=synthetic_moe"])
    mc = model_config_from_hydra(cfg, _mix(cfg))
    d = mc.to_dict()
    assert ModelConfig.from_dict(d) == mc and ModelConfig.from_dict(copy.deepcopy(d)).to_dict() == d
    assert d["backbone"]["ffn"] == "ps" and d["backbone"]["num_experts"] == len(d["heads"])
    assert list(d["heads"]) == list(cfg.data.datasets)  # mix order = expert order
    import json

    assert json.loads(json.dumps(d)) == d  # plain containers only


def test_conv_stem_round_trips_and_builds():
    cfg = compose("train", ["+experiment=smoke"])  # conv is vit_tiny's default
    mc = model_config_from_hydra(cfg, _mix(cfg))
    d = mc.to_dict()
    assert d["backbone"]["stem"] == "conv" and ModelConfig.from_dict(d) == mc
    assert type(model_from_config(d).backbone.patch_embed).__name__ == "ConvStem"
    plain = model_config_from_hydra(
        compose("train", ["+experiment=smoke", "backbone.stem=patch"]), _mix(cfg)
    ).to_dict()
    assert "stem" not in plain["backbone"]  # checkpoints of the official layout are written as before
    with pytest.raises(ModelConfigError, match="backbone.stem='vgg'"):
        ModelConfig.from_dict({**d, "backbone": {**d["backbone"], "stem": "vgg"}})


def test_old_lightning_checkpoint_loads(tmp_path):
    """A Lightning checkpoint whose hyper-parameters hold today's dict loads as a pose model."""
    from multipose.models.loading import load_pose_model

    cfg = compose("train", ["+experiment=smoke"])
    old = _todays_train_dict(cfg, _mix(cfg))
    model = model_from_config(old)
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model_config": old},
            "global_step": 7,
        },
        path,
    )
    loaded = load_pose_model(path)
    x = torch.randn(2, 3, *old["backbone"]["img_size"])
    name = next(iter(old["heads"]))
    assert torch.allclose(loaded.predict_heatmaps(x, head=name), model.eval().predict_heatmaps(x, head=name))


def test_extra_top_level_keys_survive():
    d = {
        "backbone": {"name": "vit_tiny"},
        "heads": {"a": {"skeleton": "coco", "num_keypoints": 17}},
        "head_bn": "batch",
    }
    assert ModelConfig.from_dict(d).to_dict()["head_bn"] == "batch"


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"backbone": {"name": "vit_giant"}}, "backbone.name='vit_giant'"),
        ({"backbone": {"name": "vit_tiny", "ffn": "moe"}}, "backbone.ffn='moe'"),
        ({"backbone": {"name": "vit_tiny", "img_size": [64]}}, "backbone.img_size"),
        ({"backbone": {"name": "vit_tiny", "colour": 1}}, "unknown keys ['colour']"),
        ({"backbone": {"name": "vit_tiny", "overrides": {"depth": 2, "width": 3}}}, "overrides has unknown"),
        ({"head": {"type": "fancy"}}, "head.type='fancy'"),
        ({"heads": {"a": {"skeleton": "coco"}}}, "heads.a needs"),
    ],
)
def test_bad_configs_name_the_field(patch, words):
    d = {"backbone": {"name": "vit_tiny"}, "heads": {"a": {"skeleton": "coco", "num_keypoints": 17}}, **patch}
    with pytest.raises(ModelConfigError) as info:
        ModelConfig.from_dict(d)
    assert words in str(info.value)


def test_merged_config_matches_merged_model():
    cfg = compose("train", ["+experiment=synthetic_moe"])
    mc = model_config_from_hydra(cfg, _mix(cfg))
    model = model_from_config(mc).eval()
    head = mc.head_names[1]
    dense = model.merge_experts(head)
    rebuilt = model_from_config(mc.merged(head))
    rebuilt.load_state_dict(dense.state_dict(), strict=True)
    assert rebuilt.dataset_names == [head] and rebuilt.backbone.ffn == "shared"
    with pytest.raises(ModelConfigError, match="no head named 'nope'"):
        mc.merged("nope")
