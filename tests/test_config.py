"""Config composition: every experiment and every group option composes, resolves and validates."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, compose
from multipose.config_validation import ConfigError, validate_train_config

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
GROUP_OPTIONS = [
    (group, p.stem)
    for group in (
        "backbone",
        "head",
        "optim",
        "trainer",
        "logger",
        "callbacks",
        "debug",
        "loss",
        "evaluation",
    )
    for p in sorted((CONF_DIR / group).glob("*.yaml"))
]


def _resolve(cfg):
    # the hydra: interpolations need a running app; replace them for offline resolution
    cfg.paths.output_dir = "/tmp/multipose-test-out"
    cfg.paths.work_dir = "."
    return OmegaConf.to_container(cfg, resolve=True)


def test_experiment_list_is_not_empty():
    assert {"smoke", "full_mix"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    cfg = compose("train", [f"+experiment={experiment}"])
    container = _resolve(cfg)
    assert container["data"]["datasets"], experiment
    assert cfg.task_name != "train" or experiment == "default"


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes(group, option):
    cfg = compose("train", [f"{group}={option}"])
    _resolve(cfg)


def test_default_config_validates():
    cfg = compose("train")
    validate_train_config(cfg)
    assert list(cfg.data.datasets) == ["syn_coco", "syn_aic", "syn_mpii", "syn_wholebody", "syn_ap10k"]


def test_full_mix_describes_the_vitpose_pp_mix():
    cfg = compose("train", ["+experiment=full_mix", "paths.data_root=/datasets"])
    validate_train_config(cfg, check_files=False)
    with pytest.raises(ValueError, match="coco/annotations/person_keypoints_train2017.json"):
        validate_train_config(cfg)  # the real annotation files are not here
    assert list(cfg.data.datasets) == ["coco", "aic", "mpii", "ap10k", "apt36k", "wholebody"]
    assert cfg.backbone.ffn == "ps" and cfg.backbone.name == "vit_base"
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.milestones == [170, 200]
    assert cfg.trainer.max_epochs == 210 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.root == "/datasets"


def test_eval_config_composes():
    cfg = compose("eval", ["ckpt_path=some.ckpt"])
    assert cfg.ckpt_path == "some.ckpt"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backbone.name=vit_gigantic", "backbone.name"),
        ("backbone.ffn=moe", "backbone.ffn"),
        ("head.type=fancy", "head.type"),
        ("data.heatmap_size=[64,48]", "data.heatmap_size"),
        ("data.input_size=[130,96]", "data.input_size"),
        ("trainer.precision=8", "trainer.precision"),
        ("+loss.dataset_weights.no_such_set=2.0", "loss.dataset_weights"),
        ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path"),
        ("+loss.acae.consistency=0.1", "the acae bridge is off"),
        ("+bridge.no_such_method={}", "bridge.no_such_method"),
    ],
)
def test_validation_names_the_option(override, message):
    cfg = compose("train", [override])
    with pytest.raises((ConfigError, ValueError), match=message.replace(".", r"\.")):
        validate_train_config(cfg)


# what an hparams_search option needs to compose: overrides (its swept keys belong to a bridge) and a sweeper plugin
HPARAMS_SEARCH_NEEDS = {"posebh_optuna": (["+bridge=posebh"], "hydra_plugins.hydra_optuna_sweeper")}


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml")))
def test_hparams_search_defines_a_multirun_sweep(option):
    extra, plugin = HPARAMS_SEARCH_NEEDS.get(option, ([], None))
    if plugin:
        pytest.importorskip(plugin, reason="the sweeps extra is not installed: pip install -e '.[sweeps]'")
    for bridge in (o.split("=", 1)[1] for o in extra if o.startswith("+bridge=")):
        if not (CONF_DIR / "bridge" / f"{bridge}.yaml").is_file():
            pytest.skip(f"conf/bridge/{bridge}.yaml is not in this checkout")
    cfg = compose("train", [f"hparams_search={option}", *extra], return_hydra_config=True)
    assert str(cfg.hydra.mode).endswith("MULTIRUN")
    params = dict(cfg.hydra.sweeper.params)
    assert params
    for key, values in params.items():
        assert OmegaConf.select(cfg, key) is not None, key  # every swept key exists in the config
        assert "," in values
