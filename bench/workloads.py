"""Our workloads end to end: XADD a work item on the phase's stream, read its result event back
from `dago:events:node.completed` (or `node.failed`), with the real worker and ingress.

The node kinds: `tool` (built-in `calculate`), `llm` (an `echo*` model, answered at once by the
bench's LLM server, bench/llm_server.py) and `agent` (k iterations: `calculate` tool_use k-1
times, then text).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from bench.stack import COMPLETED, FAILED
from adapters import result_stream
from executor.local_services import Proc

AGENT_ITERATIONS = 3


def tool_node(i: int) -> dict[str, Any]:
    return {"tool_name": "calculate", "tool_params": {"expression": f"2*({i}+1)"}}


def llm_node(i: int) -> dict[str, Any]:
    return {"llm_config": {"model": "echo-bench", "prompt": f"say {i}", "max_tokens": 64}}


def agent_node(i: int, k: int = AGENT_ITERATIONS) -> dict[str, Any]:
    return {"llm_config": {"model": f"bench-agent-k{k}", "max_tokens": 256}, "tools": ["calculate"], "task": f"count to {i}"}


def waiting_agent_node(i: int) -> dict[str, Any]:
    """An agent whose first LLM call is held by the slow server until released."""
    return {"llm_config": {"model": "bench-hold", "max_tokens": 256}, "tools": ["calculate"], "task": f"wait {i}"}


NODES: dict[str, Callable[[int], dict[str, Any]]] = {"tool": tool_node, "llm": llm_node, "agent": agent_node}


def envelope(config: dict[str, Any]) -> dict[str, Any]:
    """The Go executor envelope (1a) with an id, as the orchestrator would XADD it."""
    return {
        "id": str(uuid.uuid4()),
        "graph_id": f"bench-{uuid.uuid4().hex[:12]}",
        "node_id": "n1",
        "node_type": "executor",
        "config": config,
    }


class ResultReader:
    """One XREAD loop on the result streams; each submitted graph id waits on its own future."""

    def __init__(self, redis: aioredis.Redis):
        self._redis = redis
        self._waiting: dict[str, asyncio.Future[tuple[float, dict[str, Any]]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cursor = await result_stream.at_end(self._redis, [COMPLETED, FAILED])
        self._task = asyncio.create_task(self._read(cursor))

    async def _read(self, cursor: dict[str, str]) -> None:
        async for _, event in result_stream.follow(self._redis, cursor, count=500):
            future = self._waiting.pop(event.get("graph_id"), None)
            if future is not None and not future.done():
                future.set_result((time.perf_counter(), event))

    def expect(self, graph_id: str) -> asyncio.Future[tuple[float, dict[str, Any]]]:
        future: asyncio.Future[tuple[float, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[graph_id] = future
        return future

    def forget(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def close(self) -> None:
        """Stop the read loop. Bounded: after the stock dev server phase, a cancelled XREAD was
        seen not to return (the loop swallowed the cancellation somewhere in redis-py)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=3)


class ServiceDied(RuntimeError):
    """A worker or ingress exited while nodes waited on it."""


async def watched(awaitable: Awaitable[Any], *, watch: Sequence[Proc], timeout: float, what: str) -> Any:
    """Await, but stop at once if a process it depends on exits, or after `timeout` seconds."""
    task = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            if done:
                return task.result()
            dead = [p for p in watch if not p.alive()]
            if dead:
                raise ServiceDied(f"{dead[0].name} exited with code {dead[0].popen.returncode} (see test-artifacts/bench.log)")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not done within {timeout:.0f}s")
    finally:
        task.cancel()


class StreamDriver:
    """Submits work items on one stream and times them until their result event. `watch` are
    the processes serving the stream: if one exits, waiting stops at once with its exit code."""

    def __init__(self, redis: aioredis.Redis, reader: ResultReader, stream: str, watch: Sequence[Proc] = ()):
        self._redis = redis
        self._reader = reader
        self.stream = stream
        self.watch = list(watch)
        self.failed = 0
        self.events: list[dict[str, Any]] = []  # the result events of `one` (their workflow ids, for histories)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def _wait(self, awaitable: Awaitable[Any], timeout: float, what: str) -> Any:
        return await watched(awaitable, watch=self.watch, timeout=timeout, what=f"{what} on {self.stream}")

    def _check(self, event: dict[str, Any]) -> None:
        if event.get("type") != "node.completed":
            self.failed += 1
            if self.failed <= 3:
                print(f"bench: node failed: {event.get('data', {}).get('error')}", flush=True)

    async def one(self, config: dict[str, Any], timeout: float = 60.0) -> float:
        doc = envelope(config)
        future = self._reader.expect(doc["graph_id"])
        t0 = time.perf_counter()
        await self._redis.xadd(self.stream, {"data": json.dumps(doc)})
        done, event = await self._wait(future, timeout, "a node")
        self._check(event)
        self.events.append(event)
        return done - t0

    async def sequential(self, make: Callable[[int], dict[str, Any]], runs: int, timeout: float = 60.0) -> list[float]:
        return [await self.one(make(i), timeout) for i in range(runs)]

    async def burst(self, make: Callable[[int], dict[str, Any]], n: int, timeout: float = 180.0) -> tuple[float, list[float]]:
        """N work items XADDed at once (one pipeline); (seconds until the last result, latencies)."""
        docs = [envelope(make(i)) for i in range(n)]
        futures = [self._reader.expect(d["graph_id"]) for d in docs]
        t0 = time.perf_counter()
        async with self._redis.pipeline(transaction=False) as pipe:
            for doc in docs:
                pipe.xadd(self.stream, {"data": json.dumps(doc)})
            await pipe.execute()
        results = await self._wait(asyncio.gather(*futures), timeout, f"{n} nodes at once")
        for _, event in results:
            self._check(event)
        latencies = [done - t0 for done, _ in results]
        return max(latencies), latencies

    async def submit_only(self, make: Callable[[int], dict[str, Any]], n: int, chunk: int = 500) -> None:
        """XADD without waiting for results (the waiting loops)."""
        for start in range(0, n, chunk):
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(n, start + chunk)):
                    pipe.xadd(self.stream, {"data": json.dumps(envelope(make(i)))})
                await pipe.execute()
