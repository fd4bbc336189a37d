"""The bare Temporal ceiling: our tool node's activity plan with nothing in it.

`BareNode` runs three no-op activities in the order NodeWorkflow runs them for a tool node
(resolve → call_tool → emit), the middle one under `asyncio.wait_for` like the node deadline
(which makes the SDK start a Temporal timer and cancel it afterwards). Same data converter
(pydantic), same sandboxed workflow runner and worker defaults as ours; no Redis, no stream, no
search attributes, no logging in the activities.

`python -m bench.baseline worker` runs its worker in its own process (like ours);
`run_bare` measures it from a client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

STEP = dict(start_to_close_timeout=timedelta(seconds=30))


@activity.defn(name="bare_resolve")
async def bare_resolve(value: str) -> str:
    return value


@activity.defn(name="bare_call")
async def bare_call(value: str) -> str:
    return value


@activity.defn(name="bare_emit")
async def bare_emit(value: str) -> str:
    return value


@workflow.defn(name="BareNode")
class BareNode:
    @workflow.run
    async def run(self, value: str) -> str:
        resolved = await workflow.execute_activity(bare_resolve, value, **STEP)
        try:  # the node deadline: a timer, started and cancelled, as in NodeWorkflow._execute
            output = await asyncio.wait_for(workflow.execute_activity(bare_call, resolved, **STEP), timeout=3600)
        except asyncio.TimeoutError:
            output = "deadline"
        return await workflow.execute_activity(bare_emit, output, **STEP)


ACTIVITIES = [bare_resolve, bare_call, bare_emit]


async def connect(address: str) -> Client:
    from adapters.settings import Settings
    from adapters.temporal_client import connect as connect_client

    return await connect_client(Settings(temporal_address=address))


def bare_worker(client: Client, task_queue: str, **options: object) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[BareNode], activities=ACTIVITIES, **options)  # type: ignore[arg-type]


async def serve(address: str, task_queue: str) -> None:
    client = await connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with bare_worker(client, task_queue):
        print(f"bare worker polling {task_queue}", flush=True)
        await stop.wait()


# -- measurement --------------------------------------------------------------------------------
# Ours is timed until its result event is read, which the emit activity writes before the
# workflow's last task; the bare workflow is timed until its result (one workflow task later)
# and, for the like-for-like figure, until its emit activity completed (from its history).


@dataclass
class Run:
    handle: WorkflowHandle[Any, Any]
    t0_wall: float
    t0: float
    done: float = 0.0
    eager: bool = False


async def start(client: Client, task_queue: str, *, eager: bool = False) -> Run:
    t0_wall, t0 = time.time(), time.perf_counter()
    handle = await client.start_workflow(
        BareNode.run, "x", id=f"bare-{uuid.uuid4().hex}", task_queue=task_queue, request_eager_start=eager
    )
    return Run(handle, t0_wall, t0, eager=bool(getattr(handle, "__temporal_eagerly_started", False)))


async def finish(run: Run) -> Run:
    await run.handle.result()
    run.done = time.perf_counter()
    return run


async def to_emit(runs: list[Run], concurrency: int = 20) -> list[float]:
    """Seconds from each start to its emit activity's completion (ActivityTaskCompleted event)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(run: Run) -> float:
        async with slots:
            history = await run.handle.fetch_history()
        completed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
        at = completed[-1].event_time.ToDatetime().replace(tzinfo=UTC).timestamp()
        return at - run.t0_wall

    return list(await asyncio.gather(*(one(r) for r in runs)))


async def sequential(client: Client, task_queue: str, runs: int, *, eager: bool = False) -> list[Run]:
    return [await finish(await start(client, task_queue, eager=eager)) for _ in range(runs)]


async def saturation(client: Client, task_queue: str, n: int) -> tuple[float, list[Run]]:
    """N workflows started at once; (seconds until the last result, the runs)."""
    t0 = time.perf_counter()

    async def run_one() -> Run:
        run = await start(client, task_queue)
        run.t0 = t0  # latency under load counts from the burst's start
        return await finish(run)

    runs = await asyncio.gather(*(run_one() for _ in range(n)))
    return time.perf_counter() - t0, list(runs)


def latencies(runs: list[Run]) -> list[float]:
    return [r.done - r.t0 for r in runs]


def worker_main(serve: Callable[[str, str], Awaitable[None]]) -> None:
    """`python -m bench.<module> worker --task-queue Q`: a bench worker process around `serve`."""
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["worker"])
    p.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    p.add_argument("--task-queue", required=True)
    args = p.parse_args()
    asyncio.run(serve(args.address, args.task_queue))
    sys.stdout.flush()
    os._exit(0)  # temporalio's native threads can abort a finalising interpreter


def main() -> None:
    worker_main(serve)


if __name__ == "__main__":
    main()
