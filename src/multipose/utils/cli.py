"""How the command-line entry points end: a config mistake prints its message alone (the full traceback with
``HYDRA_FULL_ERROR=1``), an interrupted run says where its checkpoint is and how to resume."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("multipose")


class RunInterrupted(Exception):
    """Training stopped on a signal after writing ``last.ckpt``; ``signum`` is the signal received."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.signum = int(signum)
        self.checkpoint = checkpoint
        name = signal.Signals(self.signum).name
        where = f"; last.ckpt written to {checkpoint}" if checkpoint else ""
        super().__init__(f"training stopped by {name}{where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def is_user_error(err: BaseException) -> bool:
    """Errors multipose raises about the user's input (config, data, skeleton, checkpoint files) carry a message
    that names the option and what to do: every ``ValueError`` subclass defined in a ``multipose`` module."""
    return any(
        cls.__module__.startswith("multipose.") and issubclass(cls, ValueError) for cls in type(err).__mro__
    )


def run_entry_point(task: Callable[[], Any], run_dir: str | None = None) -> Any:
    """Run ``task``; on a user error print ``Error: <message>`` and exit with status 2; on a signal exit with
    128 + signal number after saying how to resume."""
    try:
        return task()
    except RunInterrupted as err:
        log.warning("%s", err)
        if run_dir:
            log.warning("run directory: %s", run_dir)
            if err.checkpoint is not None:
                log.warning("resume with: python -m multipose.train resume=%s", run_dir)
        sys.exit(err.exit_code)
    except SystemExit as err:
        if type(err).__name__ != "SIGTERMException":  # Lightning's own SIGTERM stop (between two steps)
            raise
        log.warning("training stopped by SIGTERM; run directory: %s", run_dir)
        log.warning("resume with: python -m multipose.train resume=%s", run_dir)
        sys.exit(128 + signal.SIGTERM)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not is_user_error(err):
            raise
        print(f"Error: {err}", file=sys.stderr, flush=True)
        print("(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr, flush=True)
        sys.exit(2)
