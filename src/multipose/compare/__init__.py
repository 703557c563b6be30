"""The paired comparison protocol behind ``scripts/compare.py``: baseline vs method continuations of one stage-0
checkpoint, the same optimiser steps on the same batches, several seeds, one table with the seed spread as the
noise floor.

A *method* is nothing but a list of Hydra overrides of ``conf/train.yaml`` (``+bridge=acae``,
``+experiment=posebh_demo``, ``loss.heatmap=2.0``); this package knows nothing of any method's internals.

Modules (each usable on its own, all tested in ``tests/test_compare.py``):

* :mod:`.protocol` - what the protocol owns: the keys in :data:`PROTOCOL_KEYS` (start weights, seed, run length,
  validation cadence; a method or ``--base`` that sets one is refused), the stage-0 presets, the file names of a
  protocol run and :class:`ProtocolError`.
* :mod:`.identity` - :func:`config_key`: sha256 of the composed, resolved config (with the stage-0 checkpoint
  replaced by its content hash): the identity of a run, used to reuse finished runs and as the stage-0 cache key;
  :func:`method_name_from`.
* :mod:`.plans` - :func:`plan_continuation` / :func:`plan_stage0`: the overrides, key and run directory of one
  run (arm, seed).
* :mod:`.runner` - :func:`execute`: run the plans one after another as ``python -m multipose.train``
  subprocesses, reusing a run whose ``metrics.json`` exists under the same key, resuming one that was
  interrupted (``last.ckpt`` present), recording a failed one (exit code, log file) instead of dropping it.
* :mod:`.batch_digest` - :class:`BatchDigest`: a Lightning callback added to every protocol run: a hash of each
  training batch (images, dataset indices, annotation ids) and the final step count, written to
  ``batch_digest.json``. The table says whether both arms of a seed really saw the same batches for the same
  number of steps.
* :mod:`.table` - :func:`summarize` / :func:`markdown_report` / :func:`csv_report`: own AP/PCKh per dataset,
  cross-skeleton AP, cross-head consistency, the method's own keys; baseline mean, method mean, difference, and
  each arm's seed spread (max - min over seeds; ``|seed0 - seed1|`` for two seeds) as the noise floor.
* :mod:`.run_report` - :func:`header_lines` / :func:`run_lines`: the command, code version, stage 0 and one
  line per run above the table.
"""

from multipose.compare.batch_digest import BatchDigest
from multipose.compare.identity import config_key, file_sha256, method_name_from
from multipose.compare.plans import (
    RunPlan,
    plan_continuation,
    plan_stage0,
    stage0_checkpoint,
    steps_per_epoch,
)
from multipose.compare.protocol import (
    BATCH_DIGEST_TARGET,
    DIGEST_FILE,
    PROTOCOL_KEYS,
    RUN_INFO,
    STAGE0_PRESETS,
    ProtocolError,
)
from multipose.compare.run_report import header_lines, run_lines
from multipose.compare.runner import RunResult, execute, run_state, subprocess_launcher
from multipose.compare.table import Row, csv_report, markdown_report, summarize

__all__ = [
    "BATCH_DIGEST_TARGET",
    "DIGEST_FILE",
    "PROTOCOL_KEYS",
    "RUN_INFO",
    "STAGE0_PRESETS",
    "BatchDigest",
    "ProtocolError",
    "Row",
    "RunPlan",
    "RunResult",
    "config_key",
    "csv_report",
    "execute",
    "file_sha256",
    "header_lines",
    "markdown_report",
    "method_name_from",
    "plan_continuation",
    "plan_stage0",
    "run_lines",
    "run_state",
    "stage0_checkpoint",
    "steps_per_epoch",
    "subprocess_launcher",
    "summarize",
]
