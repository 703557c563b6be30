"""Inference: the mix description, the one top-down predictor and drawing."""

from .predictor import HeadPrediction, Predictor, select_instances
from .spec import DatasetSpec, MixSpec

__all__ = ["DatasetSpec", "HeadPrediction", "MixSpec", "Predictor", "select_instances"]
