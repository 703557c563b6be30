"""Shared fixtures: Hydra config composition against the repo's conf/ and a session-wide tiny synthetic world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multipose.utils.compose import CONF_DIR, compose_config

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    return CONF_DIR


def compose(
    config_name: str = "train", overrides: list[str] | None = None, return_hydra_config: bool = False
):
    """Compose a config from conf/ exactly as the CLI would."""
    return compose_config(config_name, overrides, return_hydra_config)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The tiny synthetic world (a few images per dataset), generated once per test session."""
    from multipose.data.synthetic import generate_world

    root = tmp_path_factory.mktemp("data") / "synthetic_tiny"
    generate_world(root, "tiny", seed=0)
    return root
