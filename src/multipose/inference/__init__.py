"""Inference: the mix description, the one top-down predictor and drawing."""

from .predictor import HeadPrediction, Predictor
from .spec import DatasetSpec, MixSpec

__all__ = ["DatasetSpec", "HeadPrediction", "MixSpec", "Predictor"]
