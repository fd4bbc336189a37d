"""Patience with a dependency that is down: doubling waits between attempts, cut short by a stop.

The services wait this way for Temporal and Redis at start, and the ingress between failed reads
and starts; one class, so every wait logs the same way and stops at once on SIGTERM.
"""

from __future__ import annotations

import asyncio


class Backoff:
    def __init__(self, first: float = 0.2, limit: float = 10.0):
        self._first, self._limit = first, limit
        self.delay = first

    def reset(self) -> None:
        self.delay = self._first

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep the current delay (less if `stop` is set meanwhile) and double it; True when
        stopped."""
        try:
            if stop is None:
                await asyncio.sleep(self.delay)
                return False
            await asyncio.wait_for(stop.wait(), self.delay)
            return True
        except TimeoutError:
            return False
        finally:
            self.delay = min(self.delay * 2, self._limit)
