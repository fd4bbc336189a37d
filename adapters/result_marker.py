"""The one-writer rule for result events: every writer (the workflow's emit activity, the
watchdog's `node.failed`, the operator's `rerun`) reserves the workflow's emitted marker here.

`write_once`: WATCH the marker and, only if it is absent, MULTI: XADD the event + SET the marker
(+ what the writer adds: the emit activity writes a completed node's output into the graph state).
Whoever comes second (the workflow's own emit, another ingress replica's watchdog, a retry) finds
the marker and writes nothing.

`lease` serialises the two writers that decide from Temporal's state: the watchdog (which reports
a run only while it is the latest of its workflow id) and `rerun` (which clears the marker, then
starts a new run). Without it a report decided on the old run could land just after a re-run
cleared the marker, and the new run's result would then be taken for a duplicate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from core import keys
from core.result_event import ResultEvent
from adapters.redis_client import as_str

LEASE_SECONDS = 60  # far above what a report or a re-run takes; a crashed holder frees it by then

# Delete the lease only if it is still ours (it may have expired and been taken by another).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class Reservation:
    stream: str  # where the event went; when it was already emitted, where the first one went
    entry_id: str | None  # the entry written; None when the marker was already set

    @property
    def written(self) -> bool:
        return self.entry_id is not None


# Called after WATCH, while the pipeline still reads at once: it may read the keys it watched, and
# returns what to queue in the transaction beside the event (or None: nothing more).
Prepare = Callable[[Pipeline], Awaitable[Callable[[Pipeline], None] | None]]


async def write_once(
    client: redis.Redis,
    workflow_id: str,
    stream: str,
    event: ResultEvent,
    marker_ttl_seconds: int,
    *,
    watch: Sequence[str] = (),
    prepare: Prepare | None = None,
) -> Reservation:
    """XADD `event` to `stream` and set the workflow's emitted marker, unless the marker exists.

    `watch` and `prepare` let a writer change other keys in the same transaction (the emit
    activity writes the node's output into the graph state): a change to a watched key between the
    read and the EXEC starts the reservation over."""
    marker = keys.emitted_marker(workflow_id)
    async with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(marker, *watch)
                already = await pipe.get(marker)
                if already is not None:
                    return Reservation(stream=as_str(already), entry_id=None)
                also = await prepare(pipe) if prepare is not None else None
                pipe.multi()
                pipe.xadd(stream, {"data": event.model_dump_json()})
                pipe.set(marker, stream, ex=marker_ttl_seconds)
                if also is not None:
                    also(pipe)
                entry_id, *_ = await pipe.execute()
                return Reservation(stream=stream, entry_id=as_str(entry_id))
            except WatchError:
                continue  # someone wrote the marker or a watched key meanwhile: read again


@asynccontextmanager
async def lease(client: redis.Redis, workflow_id: str, *, wait: float = 0.0) -> AsyncIterator[bool]:
    """Hold the workflow's report lease for the block; yields False when another holds it (after
    trying for `wait` seconds)."""
    key = keys.report_lease(workflow_id)
    token = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    held = bool(await client.set(key, token, nx=True, ex=LEASE_SECONDS))
    while not held and loop.time() < deadline:
        await asyncio.sleep(0.2)
        held = bool(await client.set(key, token, nx=True, ex=LEASE_SECONDS))
    try:
        yield held
    finally:
        if held:
            await client.eval(_RELEASE, 1, key, token)
