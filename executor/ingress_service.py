"""The ingress process: connects, then consumes until stopped, with the watchdog beside the
consumer (ingress/watchdog.py: a node that stopped for good still gets its result event)."""

from __future__ import annotations

import asyncio
import logging

from adapters.backoff import Backoff
from adapters import redis_client, search_attributes, temporal_client, tracing
from adapters.settings import Settings
from adapters.health import HealthServer
from adapters.metrics import Metrics
from temporalio.client import Client
from temporalio.runtime import Runtime
from ingress.consumer import Ingress
from ingress.watchdog import Watchdog

log = logging.getLogger(__name__)


async def connect_temporal(settings: Settings, stop: asyncio.Event, runtime: Runtime) -> Client:
    """Keep trying until the Temporal server answers (it may start after us)."""
    backoff = Backoff(first=0.5)
    plugins = tracing.plugins("ingress")
    while True:
        try:
            return await temporal_client.connect(settings, runtime=runtime, plugins=plugins)
        except RuntimeError as exc:  # the SDK reports connection failures as RuntimeError
            if stop.is_set():
                raise
            log.warning("Temporal at %s not reachable (%s); retrying in %.1fs", settings.temporal_address, exc, backoff.delay)
            await backoff.wait()


async def run_ingress(settings: Settings, stop: asyncio.Event) -> None:
    runtime = temporal_client.runtime(settings)
    temporal = await connect_temporal(settings, stop, runtime)
    redis = redis_client.connect(settings)
    registered = await search_attributes.registered(temporal, settings.temporal_namespace)
    ingress = Ingress(redis, temporal, settings, Metrics(runtime.metric_meter), search_attributes=registered)
    watchdog = Watchdog(redis, temporal, settings)

    async def consuming() -> None:
        stalled = asyncio.get_running_loop().time() - ingress.last_loop
        if stalled > settings.ingress_block_ms / 1000 + 10:
            raise RuntimeError(f"consumer loop stalled for {stalled:.0f}s")

    checks = {"temporal": temporal.service_client.check_health, "redis": redis.ping, "consumer": consuming}
    try:
        async with HealthServer(settings.health_port, checks, settings.metrics_port):
            # Probes answer (not ready) while Redis is awaited; a server below the floor ends the process.
            log.info("Redis at %s: %s", settings.redis_addr, await redis_client.require_supported(redis, settings, stop))
            async with asyncio.TaskGroup() as tasks:
                watching = tasks.create_task(watchdog.run(stop))  # every replica may run it: the marker dedups
                await ingress.run(stop)
                watching.cancel()  # stopping: a pass in flight (Temporal unreachable?) need not finish
    finally:
        await redis.aclose()
        tracing.shutdown()
    log.info("ingress stopped")
