"""Checkpoints: safe reading, the formats multipose converts from, and partial loading.

================  ==========================================================================================
``read``          :func:`read_checkpoint`, the one safe reader every checkpoint goes through
``common``        error classes (one per failure), :class:`ConversionResult`, shared constants
``official``      official ViTPose / ViTPose++ ``.pth`` files (the key layout the others map to)
``hf``            Hugging Face transformers VitPose state dicts
``mae``           MAE pretraining weights
``native``        multipose files (:func:`save_multipose`) and Lightning ``.ckpt`` files of multipose runs
``detect``        :func:`detect_format` and :func:`convert_checkpoint` (any supported file -> multipose layout)
``partial``       :func:`load_partial_state`, :func:`load_backbone_init` and their :class:`LoadReport`
================  ==========================================================================================

Nothing here builds a network (that is :mod:`multipose.models.loading`); every mapping works on
``dict[str, Tensor]`` state dicts and the model config of :mod:`multipose.models.model_config`.
"""

from multipose.models.checkpoints.common import (
    FORMATS,
    CheckpointError,
    CheckpointLayoutError,
    ConversionResult,
    NotACheckpointError,
    TruncatedCheckpointError,
    UnsafeCheckpointError,
    compact_keys,
)
from multipose.models.checkpoints.detect import convert_checkpoint, convert_loaded, detect_format
from multipose.models.checkpoints.native import (
    MULTIPOSE_FORMAT_VERSION,
    check_training_checkpoint,
    read_multipose,
    save_multipose,
)
from multipose.models.checkpoints.partial import LoadReport, load_backbone_init, load_partial_state
from multipose.models.checkpoints.read import read_checkpoint, unwrap_state_dict

__all__ = [
    "FORMATS",
    "MULTIPOSE_FORMAT_VERSION",
    "CheckpointError",
    "CheckpointLayoutError",
    "ConversionResult",
    "LoadReport",
    "NotACheckpointError",
    "TruncatedCheckpointError",
    "UnsafeCheckpointError",
    "check_training_checkpoint",
    "compact_keys",
    "convert_checkpoint",
    "convert_loaded",
    "detect_format",
    "load_backbone_init",
    "load_partial_state",
    "read_checkpoint",
    "read_multipose",
    "save_multipose",
    "unwrap_state_dict",
]
