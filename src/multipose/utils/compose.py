"""Compose the Hydra config tree from Python (scripts, notebooks, tests) exactly as the CLI would."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(
    config_name: str = "train", overrides: list[str] | None = None, return_hydra_config: bool = False
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides`` (Hydra override syntax)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not CONF_DIR.is_dir():
        raise FileNotFoundError(
            f"config folder {CONF_DIR} not found: multipose's configs ship inside the package (multipose/conf); "
            "reinstall multipose"
        )
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name=config_name, overrides=overrides or [], return_hydra_config=return_hydra_config
        )
