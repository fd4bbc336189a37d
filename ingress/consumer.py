"""Ingress: each `executor.work` entry becomes one NodeWorkflow, exactly once.

One loop, read top to bottom: read a batch (own pending entries first, then new ones), start a
workflow per entry with an id derived from the work item, acknowledge what was started. Reading is
at-least-once; the start is idempotent (USE_EXISTING while running, REJECT_DUPLICATE once closed),
so a redelivered entry never runs twice. What could not be started stays pending and is retried.

Never die of an entry: one that cannot become a work item, or whose handling raises anything but a
transient Redis or Temporal error, is dead-lettered with the cause, reported as `node.failed` when
its ids are known, and acked, in one transaction. On restart the ingress would otherwise read its
own pending entry first and die again.

Exactly one result per work item: the dead-letter path reserves the workflow's emitted marker
through the same reservation as the emit activity (adapters/result_marker.py), so whichever
reports first wins and the other writes nothing.

Delivery counts decide when an entry is poison (`MAX_DELIVERIES`), so only real deliveries count:
a process start counts once for each entry it inherits; recovering own pending entries after a
Redis or Temporal error reads them with XPENDING and XRANGE, which count nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import DataError, ResponseError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from adapters import result_marker
from adapters.settings import Settings
from adapters.backoff import Backoff
from adapters.redis_client import as_str
from adapters.metrics import Metrics
from core.work_item import MalformedEntry, WorkItem, parse_work_entry
from core.result_event import ResultEvent
from core import search_attributes
from core.node_config import node_summary
from core.step_io import NodeInput
from workflows.node import NodeWorkflow
from ingress.dead_letters import bounded_reason, cause, dead_letter_record

log = logging.getLogger(__name__)

# A start refused for these reasons will be refused again: dead-letter instead of retrying.
_PERMANENT_START_ERRORS = {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION}


class _Verdict(enum.Enum):
    ACK = "ack"  # started (or a duplicate): acknowledge
    DONE = "done"  # dead-lettered: already acknowledged in that transaction
    RETRY = "retry"  # not started: leave pending, try again


@dataclass
class _Entry:
    stream: str
    entry_id: str
    fields: dict | None  # None: the entry was trimmed from the stream while pending
    deliveries: int = 1


def _ids(item: WorkItem) -> dict[str, str]:
    return {"graph_id": item.graph_id, "node_id": item.node_id, "workflow_id": item.workflow_id}


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _transient(exc: BaseException) -> bool:
    """A dependency's passing failure (Redis or Temporal unreachable, busy, failing over): retry
    the entry later. Anything else raised while handling an entry is the entry's own doing."""
    if isinstance(exc, redis.RedisError):
        return not isinstance(exc, DataError)  # DataError: a value Redis cannot take, every time
    return isinstance(exc, (OSError, RPCError))


class StartRefused(Exception):
    """Temporal refused the start for good (the entry is dead-lettered)."""


class Ingress:
    def __init__(
        self, redis_client: redis.Redis, temporal: Client, settings: Settings, metrics: Metrics | None = None, *, search_attributes: bool = False
    ):
        """`search_attributes`: the namespace has ours registered (adapters/search_attributes.py),
        so workflows start with them."""
        self._redis = redis_client
        self._temporal = temporal
        self._settings = settings
        self._search_attributes = search_attributes
        self._metrics = metrics or Metrics()
        self.last_loop = 0.0  # loop time of the last completed iteration (readiness)
        self._group = settings.consumer_group
        self._consumer = settings.worker_id
        self._reclaim_cursor: dict[str, str] = {}

    async def ensure_groups(self) -> None:
        """Create the consumer group where missing, at `INGRESS_GROUP_START`; say so when that
        replays (or skips) entries the stream already holds."""
        start = self._settings.ingress_group_start
        for stream in self._settings.work_streams:
            backlog = await self._redis.xlen(stream)
            try:
                await self._redis.xgroup_create(stream, self._group, id=start, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
                continue
            if backlog and start == "0":
                log.warning(
                    "consumer group %s created on %s at 0: its %d existing entries will be replayed "
                    "(set INGRESS_GROUP_START=$ to start at new entries only)",
                    self._group, stream, backlog, extra={"stream": stream},
                )
            elif backlog:
                log.info(
                    "consumer group %s created on %s at $: its %d existing entries are not replayed "
                    "(INGRESS_GROUP_START=$)",
                    self._group, stream, backlog, extra={"stream": stream},
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; transient Redis or Temporal errors back off and retry.

        Order of work: entries whose start failed (held in memory and retried as they are, so a
        Temporal outage does not count as redeliveries), then our own pending entries (from a
        previous life, or of a batch an error interrupted), then idle entries of dead consumers
        (XAUTOCLAIM), then new entries.
        """
        log.info("ingress %s reading %s", self._consumer, ", ".join(self._settings.work_streams))
        backoff = Backoff(limit=self._settings.ingress_retry_max_seconds)
        groups_ready = False
        restart_counted = False
        recovering = True
        held: list[_Entry] = []
        next_reclaim = 0.0
        while not stop.is_set():
            try:
                if not groups_ready:
                    await self.ensure_groups()
                    groups_ready = True
                if not restart_counted:
                    await self.count_restart()
                    restart_counted = True
                loop_time = asyncio.get_running_loop().time()
                if held:
                    batch, held = held, []
                elif recovering:
                    batch = await self.own_pending()
                    recovering = bool(batch)  # a full batch may hide more; an empty one: drained
                elif loop_time >= next_reclaim:
                    next_reclaim = loop_time + self._settings.reclaim_interval_ms / 1000
                    batch = await self.reclaim()
                    await self.measure_streams()
                else:
                    batch = await self.read()
                held = await self.process(batch)
                self.last_loop = asyncio.get_running_loop().time()
            except (OSError, redis.RedisError, RPCError) as exc:
                log.warning("ingress: %s; retrying in %.1fs", exc, backoff.delay)
                groups_ready = groups_ready and "NOGROUP" not in str(exc)
                recovering = True  # what the interrupted batch left pending is read again, uncounted
                held = []
                await backoff.wait(stop)
                continue
            if held:  # some starts failed (Temporal unreachable?): retry them after a pause
                await backoff.wait(stop)
            else:
                backoff.reset()

    async def read(self) -> list[_Entry]:
        """One XREADGROUP of new entries (`>`): their first delivery."""
        replies = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {stream: ">" for stream in self._settings.work_streams},
            count=self._settings.ingress_batch,
            block=self._settings.ingress_block_ms,
        )
        return [_Entry(as_str(raw_stream), as_str(eid), fields) for raw_stream, entries in replies or [] for eid, fields in entries]

    async def count_restart(self) -> None:
        """A process start is one more delivery of each entry it inherits pending from its previous
        life: a poison entry that kills the process reaches `MAX_DELIVERIES` after that many
        restarts. XCLAIM sets the count (RETRYCOUNT), JUSTID spares the bodies, and MINIDLE as
        seen skips an entry another consumer took meanwhile."""
        for stream in self._settings.work_streams:
            after = "-"
            while rows := await self._redis.xpending_range(
                stream, self._group, after, "+", self._settings.ingress_batch, consumername=self._consumer
            ):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for row in rows:
                        pipe.xclaim(
                            stream, self._group, self._consumer, int(row["time_since_delivered"]), [row["message_id"]],
                            retrycount=int(row["times_delivered"]) + 1, justid=True,
                        )
                    await pipe.execute()
                last = as_str(rows[-1]["message_id"])
                after = f"({last}"
                log.info("%d pending entries of %s inherited from a previous run: one more delivery each", len(rows), stream)

    async def own_pending(self) -> list[_Entry]:
        """Our pending entries, oldest first, with their delivery counts, without counting a
        delivery (XPENDING for ids and counts, XRANGE for the fields): reading them again after
        an error is not a delivery, and must not push a valid entry past `MAX_DELIVERIES`."""
        batch = []
        for stream in self._settings.work_streams:
            rows = await self._redis.xpending_range(
                stream, self._group, "-", "+", self._settings.ingress_batch, consumername=self._consumer
            )
            if not rows:
                continue
            async with self._redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.xrange(stream, row["message_id"], row["message_id"])
                found = await pipe.execute()
            for row, entries in zip(rows, found):
                fields = entries[0][1] if entries else None  # None: trimmed from the stream meanwhile
                batch.append(_Entry(stream, as_str(row["message_id"]), fields, int(row["times_delivered"])))
        return batch

    async def reclaim(self) -> list[_Entry]:
        """Take over entries another consumer read and left idle (it died): XAUTOCLAIM."""
        batch = []
        for stream in self._settings.work_streams:
            cursor = self._reclaim_cursor.get(stream, "0-0")
            reply = await self._redis.xautoclaim(
                stream, self._group, self._consumer, self._settings.reclaim_idle_ms, cursor, count=self._settings.ingress_batch
            )
            self._reclaim_cursor[stream] = as_str(reply[0])
            entries = reply[1]
            if entries:
                log.info("reclaimed %d idle entries of %s", len(entries), stream)
                counts = await self._deliveries(stream, [as_str(e) for e, _ in entries])
                batch += [_Entry(stream, as_str(eid), fields, counts.get(as_str(eid), 1)) for eid, fields in entries]
        return batch

    async def _deliveries(self, stream: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = await self._redis.xpending_range(
            stream, self._group, min=min(ids, key=_id_key), max=max(ids, key=_id_key), count=len(ids), consumername=self._consumer
        )
        return {as_str(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def measure_streams(self) -> None:
        """Lag (not yet delivered) and pending (delivered, not acked) per stream, as gauges."""
        for stream in self._settings.work_streams:
            for group in await self._redis.xinfo_groups(stream):
                if as_str(group["name"]) == self._group:
                    labels = {"stream": stream}
                    self._metrics.stream_pending.set(int(group.get("pending") or 0), labels)
                    if group.get("lag") is not None:  # Redis 7+
                        self._metrics.stream_lag.set(int(group["lag"]), labels)

    async def process(self, batch: list[_Entry]) -> list[_Entry]:
        """Handle a batch concurrently, ack what is done, return what must be retried."""
        if batch:
            self._metrics.entries_read.add(len(batch))
        verdicts = await asyncio.gather(*(self.handle(entry) for entry in batch))
        to_ack: dict[str, list[str]] = {}
        for entry, verdict in zip(batch, verdicts):
            if verdict is _Verdict.ACK:
                to_ack.setdefault(entry.stream, []).append(entry.entry_id)
        for stream, ids in to_ack.items():
            await self._redis.xack(stream, self._group, *ids)
        return [entry for entry, verdict in zip(batch, verdicts) if verdict is _Verdict.RETRY]

    async def handle(self, entry: _Entry) -> _Verdict:
        """Start the entry's workflow, or dead-letter it; say what to do with the entry. Only a
        transient Redis or Temporal error escapes (the loop retries the batch): anything else the
        entry causes is dead-lettered with its cause, so no entry can stop the ingress."""
        stream, entry_id, fields = entry.stream, entry.entry_id, entry.fields
        if fields is None:  # a pending entry trimmed from the stream: nothing left to run
            log.warning("pending entry %s %s no longer exists; acknowledging it", stream, entry_id)
            return _Verdict.ACK
        try:
            item = parse_work_entry(fields, stream=stream, entry_id=entry_id, max_bytes=self._settings.max_entry_bytes)
        except MalformedEntry as bad:
            await self.dead_letter(entry, bad.reason, ids=(bad.graph_id, bad.node_id))
            return _Verdict.DONE
        except Exception as exc:  # noqa: BLE001 - never die of one entry: whatever it raised, dead-letter it
            log.error("could not parse %s %s", stream, entry_id, exc_info=exc)
            await self.dead_letter(entry, cause(exc))
            return _Verdict.DONE
        try:
            return await self.start_or_dead_letter(entry, item)
        except Exception as exc:  # noqa: BLE001 - never die of one entry; a dependency's blip is retried
            if _transient(exc):
                raise
            log.error("could not handle %s %s", stream, entry_id, exc_info=exc, extra=_ids(item))
            await self.dead_letter(entry, cause(exc), item=item)
            return _Verdict.DONE

    async def start_or_dead_letter(self, entry: _Entry, item: WorkItem) -> _Verdict:
        try:
            if entry.deliveries > self._settings.max_deliveries and not await self.exists(item):
                # Read this often and still no workflow: whatever reads it dies or fails (a poison
                # entry). A workflow that exists was started, and only the ack got lost: ack it.
                reason = f"delivered {entry.deliveries} times without being started (limit {self._settings.max_deliveries})"
                await self.dead_letter(entry, reason, item=item)
                return _Verdict.DONE
            await self.start(item)
        except StartRefused as refused:
            await self.dead_letter(entry, str(refused), item=item)
            return _Verdict.DONE
        except RPCError as exc:  # Temporal unreachable: hold the entry, try again after a pause
            self._metrics.start_failures.add(1)
            log.warning("could not start %s (%s); will retry", item.workflow_id, exc, extra=_ids(item))
            return _Verdict.RETRY
        return _Verdict.ACK

    async def exists(self, item: WorkItem) -> bool:
        try:
            await self._temporal.get_workflow_handle(item.workflow_id).describe()
            return True
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise

    async def start(self, item: WorkItem) -> None:
        mode, model = search_attributes.labels(item.config, self._settings.llm_model)
        try:
            await self._temporal.start_workflow(
                NodeWorkflow.run,
                NodeInput(item=item, local_reads=self._settings.local_steps, attributes_at_start=self._search_attributes),
                id=item.workflow_id,
                task_queue=self._settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=node_summary(item.graph_id, item.node_id, mode, model),
                static_details=f"from {item.stream} entry {item.entry_id} ({item.envelope} envelope)",
                # set at start when the namespace has them: the workflow then upserts only its outcome
                search_attributes=search_attributes.at_start(item.graph_id, item.node_id, mode, model) if self._search_attributes else None,
            )
            self._metrics.workflows_started.add(1)
            log.info("started %s", item.workflow_id, extra=_ids(item))
        except WorkflowAlreadyStartedError:
            self._metrics.duplicates.add(1)
            log.info("duplicate of finished %s ignored", item.workflow_id, extra=_ids(item))
        except RPCError as exc:
            if exc.status in _PERMANENT_START_ERRORS:
                raise StartRefused(f"workflow start refused: {exc.message}") from exc
            raise

    def summary(self, item: WorkItem) -> str:
        """`graph g · node n`, plus mode and model when the envelope carries the config (any
        config: it is validated later, by the resolve step). Bounded by `node_summary`."""
        return node_summary(item.graph_id, item.node_id, *search_attributes.labels(item.config, self._settings.llm_model))

    async def dead_letter(
        self, entry: _Entry, reason: str, *, item: WorkItem | None = None, ids: tuple[str | None, str | None] = (None, None)
    ) -> None:
        """Dead-letter the entry, report `node.failed` (ids permitting) and XACK, in one transaction.

        The `node.failed` is a result event like the workflow's own, so it goes through the same
        reservation (adapters/result_marker.py): the work item's emitted marker, checked and set in
        that transaction. When it is already set, the work item was reported (its workflow
        emitted, or another replica dead-lettered it) and the entry is only acked. An entry that
        never became a work item has no workflow id: its stream entry names its marker instead."""
        stream, entry_id, reason = entry.stream, entry.entry_id, bounded_reason(reason)
        graph_id, node_id = (item.graph_id, item.node_id) if item is not None else ids
        now = datetime.now(UTC)
        record = dead_letter_record(entry, reason, consumer=self._consumer, at=now, max_entry_bytes=self._settings.max_entry_bytes)

        def dead_letter_and_ack(pipe: Pipeline) -> None:
            pipe.xadd(self._settings.dead_letter_stream, record)
            pipe.xack(stream, self._group, entry_id)

        async def beside_the_event(pipe: Pipeline) -> Callable[[Pipeline], None]:
            return dead_letter_and_ack

        reported = None
        if graph_id and node_id:
            event = ResultEvent.failure(
                graph_id=graph_id,
                node_id=node_id,
                error=f"{'work item not started' if item is not None else 'malformed work item'}: {reason}",
                event_id=str(uuid.uuid4()),
                at=now,
                failures_as_completed=self._settings.report_failures_on_completed,
                source_stream=stream,
                source_entry_id=entry_id,
            )
            reservation = await result_marker.write_once(
                self._redis,
                item.workflow_id if item is not None else f"entry:{stream}@{entry_id}",
                self._settings.result_stream("failed"),
                event,
                self._settings.emitted_marker_ttl_seconds,
                prepare=beside_the_event,
            )
            if not reservation.written:
                reported = reservation.stream
                await self._redis.xack(stream, self._group, entry_id)
        else:  # no ids, no result event: nothing to reserve
            async with self._redis.pipeline(transaction=True) as pipe:
                dead_letter_and_ack(pipe)
                await pipe.execute()
        log_ids = {"stream": stream, "entry_id": entry_id, "graph_id": graph_id, "node_id": node_id}
        extra = {k: v for k, v in log_ids.items() if v}
        if reported is not None:
            log.warning(
                "%s %s not dead-lettered: its work item was already reported (%s); acknowledged. It failed with: %s",
                stream, entry_id, reported, reason, extra=extra,
            )
            return
        self._metrics.dead_lettered.add(1)
        log.warning("dead-lettered %s %s: %s", stream, entry_id, reason, extra=extra)
