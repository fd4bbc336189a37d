"""Fault points, for the fault tests only: with `EXECUTOR_FAULTS=emit.after_write` in its
environment, a process dies at that point (as abruptly as SIGKILL), once: a flag file in
`EXECUTOR_FAULTS_DIR` records that the fault fired, so the restarted process runs on."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def fault_point(name: str) -> None:
    if name not in os.environ.get("EXECUTOR_FAULTS", "").split(","):
        return
    flag = Path(os.environ.get("EXECUTOR_FAULTS_DIR", "/tmp")) / f"fault-{name}"
    try:
        flag.touch(exist_ok=False)
    except FileExistsError:
        return
    log.error("fault point %s: the process dies here", name)
    os._exit(137)
