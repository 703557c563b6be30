"""Shared fixtures: Hydra config composition against the repo's conf/ and a session-wide tiny synthetic world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    return CONF_DIR


def compose(config_name: str = "train", overrides: list[str] | None = None, return_hydra_config: bool = False):
    """Compose a config from conf/ exactly as the CLI would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(
            config_name=config_name, overrides=overrides or [], return_hydra_config=return_hydra_config
        )


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The tiny synthetic world (a few images per dataset), generated once per test session."""
    from multipose.data.synthetic import generate_world

    root = tmp_path_factory.mktemp("data") / "synthetic_tiny"
    generate_world(root, preset="tiny", seed=0)
    return root
