"""Fault points, a test double: a worker interceptor that kills its process (as abruptly as
SIGKILL) right after a named activity finished its work and before Temporal hears of it, once.

`EXECUTOR_FAULTS=emit_result` (activity names, comma-separated) arms it; a flag file in
`EXECUTOR_FAULTS_DIR` records that a fault fired, so the restarted process runs on. Production code
knows nothing of it: only a worker started through `tests/support/faulty_worker.py` carries it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger(__name__)


class DieAfter(Interceptor):
    def __init__(self, activities: set[str], flags: Path):
        self._activities, self._flags = activities, flags

    @classmethod
    def from_env(cls) -> DieAfter:
        names = {n.strip() for n in os.environ.get("EXECUTOR_FAULTS", "").split(",") if n.strip()}
        return cls(names, Path(os.environ.get("EXECUTOR_FAULTS_DIR", "/tmp")))

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _DieAfterActivity(next, self)

    def armed(self, name: str) -> bool:
        if name not in self._activities:
            return False
        try:
            (self._flags / f"fault-{name}").touch(exist_ok=False)
        except FileExistsError:
            return False
        return True


class _DieAfterActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, faults: DieAfter):
        super().__init__(next)
        self._faults = faults

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        name = activity.info().activity_type
        if self._faults.armed(name):
            log.error("fault point: the process dies after %s, before its completion is reported", name)
            os._exit(137)
        return result
