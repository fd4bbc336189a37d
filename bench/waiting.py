"""Many agent loops waiting on a slow LLM, all on one worker process.

Each loop is an agent node whose first LLM call the slow server holds (until released, which the
bench never does: the worker is killed once the figures are taken). The bench XADDs N work items,
then samples every second: LLM calls held at the server (= loops waiting on their model), the
worker's RSS (/proc/<pid>/status VmRSS) and CPU, and how many work items the ingress has turned
into workflows, until every loop is held, or the number held and started stopped moving and the
worker is idle again (below a quarter of a core), or the time budget is spent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from temporalio.client import Client

from bench.stack import BenchStack, cpu_seconds, rss_kib
from bench.workloads import ResultReader, StreamDriver, waiting_agent_node


WARMUP = 3


def echo_agent(i: int) -> dict[str, Any]:
    return {"llm_config": {"model": "echo-warmup", "max_tokens": 64}, "tools": ["calculate"], "task": f"warm {i}"}


async def started_count(redis: aioredis.Redis, stream: str, group: str = "executor-workers") -> int:
    """Entries the ingress has acknowledged, i.e. whose workflow start Temporal accepted."""
    try:
        groups = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:
        return 0
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            return int(g.get("entries-read") or 0) - int(g.get("pending") or 0)
    return 0


async def open_workflows(client: Client, task_queue: str) -> int | None:
    try:
        count = await client.count_workflows(f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"')
        return count.count
    except Exception:  # noqa: BLE001 - visibility may lag or refuse; the figure is optional
        return None


async def measure(
    stack: BenchStack,
    redis: aioredis.Redis,
    reader: ResultReader,
    client: Client,
    *,
    label: str,
    patches: str,
    loops: int,
    budget: float,
    settle: float = 6.0,
    **env: str,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    task_queue, stream = f"bench-wait-{tag}", f"bench.wait.{tag}"
    worker = stack.start_worker(f"worker-wait-{tag}", task_queue, stream, stack.llm_url, patches=patches, **env)
    ingress = stack.start_ingress(f"ingress-wait-{tag}", task_queue, stream, INGRESS_BLOCK_MS="200", **env)
    pid = worker.proc.pid
    try:
        driver = StreamDriver(redis, reader, stream, watch=[worker.proc, ingress.proc])
        for i in range(WARMUP):  # imports, sandbox, clients: warm before the idle RSS is taken
            await driver.one(echo_agent(i), timeout=60)
        await asyncio.sleep(1.0)
        rss_idle = rss_kib(pid)
        await asyncio.to_thread(stack.slow_reset)
        t0 = time.monotonic()
        await driver.submit_only(waiting_agent_node, loops)
        samples: list[dict[str, Any]] = []
        last_change, last_state = time.monotonic(), (-1, -1)
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            stats = await asyncio.to_thread(stack.slow_stats)
            sample = {
                "t": round(now - t0, 1),
                "held": stats["held"],
                "rss_kib": rss_kib(pid),
                "cpu_s": cpu_seconds(pid),
                "started": await started_count(redis, stream),
            }
            samples.append(sample)
            if (sample["held"], sample["started"]) != last_state:  # still ramping: calls held or workflows started
                last_state, last_change = (sample["held"], sample["started"]), now
            full = sample["held"] >= loops
            busy = len(samples) >= 3 and (samples[-1]["cpu_s"] - samples[-3]["cpu_s"]) / (samples[-1]["t"] - samples[-3]["t"]) > 0.25
            stalled = sample["held"] > 0 and now - last_change >= settle and not busy  # and the worker is done with the rest
            if full or stalled or now - t0 >= budget or not worker.proc.alive():
                break
        steady_from = samples[-1]["t"]
        if full or stalled:  # as many waiting as will: let them sit a few seconds, for the steady state
            for _ in range(int(settle)):
                await asyncio.sleep(1.0)
                samples.append({
                    "t": round(time.monotonic() - t0, 1), "held": (await asyncio.to_thread(stack.slow_stats))["held"],
                    "rss_kib": rss_kib(pid), "cpu_s": cpu_seconds(pid), "started": await started_count(redis, stream),
                })
        opened = await open_workflows(client, task_queue)
        stats = await asyncio.to_thread(stack.slow_stats)
        last = samples[-1]
        window = [s for s in samples if s["t"] >= steady_from]
        cpu = None
        if len(window) >= 2 and window[-1]["t"] > window[0]["t"]:
            cpu = round(100 * (window[-1]["cpu_s"] - window[0]["cpu_s"]) / (window[-1]["t"] - window[0]["t"]), 1)
        plateau = next((s["t"] for s in samples if s["held"] == stats["max_held"]), None)
        rss_loaded = max(s["rss_kib"] for s in samples)
        in_flight = stats["max_held"]
        return {
            "label": label,
            "patches": patches or "(defaults)",
            "submitted": loops,
            "started": last["started"] - WARMUP,
            "open_workflows": opened,
            "max_in_flight": in_flight,
            "held_at_end": stats["held"],
            "server_connections_max": stats["max_connections"],
            "rss_idle_mib": round(rss_idle / 1024, 1),
            "rss_loaded_mib": round(rss_loaded / 1024, 1),
            "rss_per_loop_kib": round((rss_loaded - rss_idle) / in_flight, 1) if in_flight else None,
            "rss_per_open_loop_kib": round((rss_loaded - rss_idle) / opened, 1) if opened else None,
            "cpu_percent_waiting": cpu,
            "seconds_to_plateau": plateau,
            "worker_alive": worker.proc.alive(),
            "samples": samples,
        }
    finally:
        stack.stop(ingress.proc, kill=True)
        stack.stop(worker.proc, kill=True)
        try:
            await asyncio.to_thread(stack.slow_release)  # held connections of the dead worker end
        except OSError:
            pass
