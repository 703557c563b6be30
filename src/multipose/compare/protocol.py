"""The comparison protocol's fixed parts: the keys it owns, the stage-0 presets, the files a protocol run writes
and the error of a comparison that cannot run as asked."""

from __future__ import annotations

#: keys the protocol sets itself; a method (or ``--base``) must not set them
PROTOCOL_KEYS = (
    "init_from",
    "ckpt_path",
    "resume",
    "seed",
    "data.seed",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.min_epochs",
    "data.steps_per_epoch",
    "trainer.check_val_every_n_epoch",
    "trainer.val_check_interval",
    "hydra.run.dir",
)

#: stage-0 presets: the overrides that train the start checkpoint when none is given
STAGE0_PRESETS: dict[str, list[str]] = {"cpu_study": ["+experiment=cpu_study"], "default": []}

RUN_INFO = "compare_run.json"
DIGEST_FILE = "batch_digest.json"
#: Hydra target of the batch-digest callback. It is part of every continuation's composed config and so of its
#: run key: it keeps naming the old module path (``multipose.utils.compare`` re-exports the class), so runs made
#: before the split into ``multipose.compare`` are still found and reused.
BATCH_DIGEST_TARGET = "multipose.utils.compare.BatchDigest"


class ProtocolError(ValueError):
    """A comparison that cannot be run as asked (bad overrides, missing checkpoint); the message says what to do."""
