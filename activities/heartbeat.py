"""Heartbeats while an activity waits on the network, so a dead worker is noticed within the
heartbeat timeout (not the whole start-to-close timeout) and the step is retried elsewhere.

The beat comes every 2 s, or more often when the heartbeat timeout is short: at least three beats
per timeout, since the SDK forwards them to the server only every 0.8 timeout (throttling), and a
beat exactly as long as the timeout would race it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

INTERVAL_SECONDS = 2.0
BEATS_PER_TIMEOUT = 3


def beat_interval(heartbeat_timeout: timedelta | None) -> float:
    if not heartbeat_timeout:
        return INTERVAL_SECONDS
    return min(INTERVAL_SECONDS, heartbeat_timeout.total_seconds() / BEATS_PER_TIMEOUT)


@contextlib.asynccontextmanager
async def heartbeating(interval: float | None = None) -> AsyncIterator[None]:
    """Heartbeat until the block ends (nothing outside an activity); nesting is harmless."""
    if not activity.in_activity() or activity.info().is_local:  # a local activity has no heartbeat
        yield
        return
    if interval is None:
        interval = beat_interval(activity.info().heartbeat_timeout)

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
