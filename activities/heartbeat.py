"""Heartbeats while an activity waits on the network, so a dead worker is noticed within the
heartbeat timeout (not the whole start-to-close timeout) and the step is retried elsewhere.

Three beats per heartbeat timeout (every 6.7 s with the default 20 s), at most every 10 s: the SDK
forwards them to the server only every 0.8 timeout (throttling), so three per timeout keep one
pending at the end of every throttle window, and a beat as long as the timeout would race it.
Beating more often buys nothing (a cancellation still arrives with the next forwarded beat) and
costs CPU with thousands of calls waiting on a model: every 2 s, 2000 waiting calls made 1000
heartbeat calls a second in the worker (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

INTERVAL_SECONDS = 2.0  # without a heartbeat timeout
MAX_INTERVAL_SECONDS = 10.0
BEATS_PER_TIMEOUT = 3


def beat_interval(heartbeat_timeout: timedelta | None) -> float:
    if not heartbeat_timeout:
        return INTERVAL_SECONDS
    return min(MAX_INTERVAL_SECONDS, heartbeat_timeout.total_seconds() / BEATS_PER_TIMEOUT)


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
