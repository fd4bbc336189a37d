"""The ingress process: connects, then consumes until stopped."""

from __future__ import annotations

import asyncio
import logging

from executor import redis_client, temporal_client
from executor.config import Settings
from ingress.consumer import Ingress

log = logging.getLogger(__name__)


async def connect_temporal(settings: Settings, stop: asyncio.Event):  # noqa: ANN201
    """Keep trying until the Temporal server answers (it may start after us)."""
    delay = 0.5
    while True:
        try:
            return await temporal_client.connect(settings)
        except RuntimeError as exc:  # the SDK reports connection failures as RuntimeError
            if stop.is_set():
                raise
            log.warning("Temporal at %s not reachable (%s); retrying in %.1fs", settings.temporal_address, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


async def run_ingress(settings: Settings, stop: asyncio.Event) -> None:
    temporal = await connect_temporal(settings, stop)
    redis = redis_client.connect(settings)
    try:
        await Ingress(redis, temporal, settings).run(stop)
    finally:
        await redis.aclose()
    log.info("ingress stopped")
