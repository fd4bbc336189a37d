"""Ingress: each `executor.work` entry becomes one NodeWorkflow, exactly once.

One loop, read top to bottom: read a batch (own pending entries first, then new ones), start a
workflow per entry with an id derived from the work item, acknowledge what was started. Reading is
at-least-once; the start is idempotent (USE_EXISTING while running, REJECT_DUPLICATE once closed),
so a redelivered entry never runs twice. An entry that cannot become a work item is dead-lettered,
reported as `node.failed` when its ids are known, and acked in one transaction: never a poison
loop, never a silent drop. What could not be started stays pending and is retried.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as redis
from redis.exceptions import ResponseError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from executor.config import Settings
from executor.redis_client import text
from executor.metrics import Metrics
from executor.contract import ContractError, MalformedEntry, ResultEvent, WorkItem, detect_mode, node_summary, parse_work_entry
from executor.steps import NodeInput
from workflows.node import NodeWorkflow

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


class _Backoff:
    def __init__(self, first: float = 0.2, limit: float = 10.0):
        self._first, self._limit = first, limit
        self.delay = first

    def reset(self) -> None:
        self.delay = self._first

    async def wait(self, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), self.delay)
        except TimeoutError:
            pass
        self.delay = min(self.delay * 2, self._limit)


class StartRefused(Exception):
    """Temporal refused the start for good (the entry is dead-lettered)."""


class Ingress:
    def __init__(self, redis_client: redis.Redis, temporal: Client, settings: Settings, metrics: Metrics | None = None):
        self._redis = redis_client
        self._temporal = temporal
        self._settings = settings
        self._metrics = metrics or Metrics()
        self.last_loop = 0.0  # loop time of the last completed iteration (readiness)
        self._group = settings.consumer_group
        self._consumer = settings.worker_id
        self._reclaim_cursor: dict[str, str] = {}

    async def ensure_groups(self) -> None:
        for stream in self._settings.work_streams:
            try:
                await self._redis.xgroup_create(stream, self._group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; transient Redis or Temporal errors back off and retry.

        Order of work: entries whose start failed (held in memory and retried as they are, so a
        Temporal outage does not count as redeliveries), then our own pending entries from a
        previous life, then idle entries of dead consumers (XAUTOCLAIM), then new entries.
        """
        log.info("ingress %s reading %s", self._consumer, ", ".join(self._settings.work_streams))
        backoff = _Backoff()
        groups_ready = False
        recovering = True
        held: list[_Entry] = []
        next_reclaim = 0.0
        while not stop.is_set():
            try:
                if not groups_ready:
                    await self.ensure_groups()
                    groups_ready = True
                loop_time = asyncio.get_running_loop().time()
                if held:
                    batch, held = held, []
                elif recovering:
                    batch = await self.read(pending=True)
                    recovering = bool(batch)  # a full batch may hide more; an empty one: drained
                elif loop_time >= next_reclaim:
                    next_reclaim = loop_time + self._settings.reclaim_interval_ms / 1000
                    batch = await self.reclaim()
                    await self.measure_streams()
                else:
                    batch = await self.read(pending=False)
                held = await self.process(batch)
                self.last_loop = asyncio.get_running_loop().time()
            except (OSError, redis.RedisError, RPCError) as exc:
                log.warning("ingress: %s; retrying in %.1fs", exc, backoff.delay)
                groups_ready = groups_ready and "NOGROUP" not in str(exc)
                recovering = True
                await backoff.wait(stop)
                continue
            if held:  # some starts failed (Temporal unreachable?): retry them after a pause
                await backoff.wait(stop)
            else:
                backoff.reset()

    async def read(self, *, pending: bool) -> list[_Entry]:
        """One XREADGROUP: new entries (`>`), or our own pending ones (`0`) after a restart."""
        replies = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {stream: "0" if pending else ">" for stream in self._settings.work_streams},
            count=self._settings.ingress_batch,
            block=None if pending else self._settings.ingress_block_ms,
        )
        batch = []
        for raw_stream, entries in replies or []:
            stream = text(raw_stream)
            counts = await self._deliveries(stream, [text(e) for e, _ in entries]) if pending else {}
            batch += [_Entry(stream, text(eid), fields, counts.get(text(eid), 1)) for eid, fields in entries]
        return batch

    async def reclaim(self) -> list[_Entry]:
        """Take over entries another consumer read and left idle (it died): XAUTOCLAIM."""
        batch = []
        for stream in self._settings.work_streams:
            cursor = self._reclaim_cursor.get(stream, "0-0")
            reply = await self._redis.xautoclaim(
                stream, self._group, self._consumer, self._settings.reclaim_idle_ms, cursor, count=self._settings.ingress_batch
            )
            self._reclaim_cursor[stream] = text(reply[0])
            entries = reply[1]
            if entries:
                log.info("reclaimed %d idle entries of %s", len(entries), stream)
                counts = await self._deliveries(stream, [text(e) for e, _ in entries])
                batch += [_Entry(stream, text(eid), fields, counts.get(text(eid), 1)) for eid, fields in entries]
        return batch

    async def _deliveries(self, stream: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = await self._redis.xpending_range(
            stream, self._group, min=min(ids, key=_id_key), max=max(ids, key=_id_key), count=len(ids), consumername=self._consumer
        )
        return {text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def measure_streams(self) -> None:
        """Lag (not yet delivered) and pending (delivered, not acked) per stream, as gauges."""
        for stream in self._settings.work_streams:
            for group in await self._redis.xinfo_groups(stream):
                if text(group["name"]) == self._group:
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
        """Start the entry's workflow, or dead-letter it; say what to do with the entry."""
        stream, entry_id, fields = entry.stream, entry.entry_id, entry.fields
        if fields is None:  # a pending entry trimmed from the stream: nothing left to run
            log.warning("pending entry %s %s no longer exists; acknowledging it", stream, entry_id)
            return _Verdict.ACK
        try:
            item = parse_work_entry(fields, stream=stream, entry_id=entry_id, max_bytes=self._settings.max_entry_bytes)
        except MalformedEntry as bad:
            await self.dead_letter(entry, bad.reason, bad.graph_id, bad.node_id)
            return _Verdict.DONE
        if entry.deliveries > self._settings.max_deliveries and not await self.exists(item):
            # Read this often and still no workflow: whatever reads it dies or fails (a poison
            # entry). A workflow that exists was started, and only the ack got lost: ack it below.
            reason = f"delivered {entry.deliveries} times without being started (limit {self._settings.max_deliveries})"
            await self.dead_letter(entry, reason, item.graph_id, item.node_id, malformed=False)
            return _Verdict.DONE
        try:
            await self.start(item)
        except StartRefused as refused:
            await self.dead_letter(entry, str(refused), item.graph_id, item.node_id, malformed=False)
            return _Verdict.DONE
        except RPCError as exc:
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
        try:
            await self._temporal.start_workflow(
                NodeWorkflow.run,
                NodeInput(item=item, local_steps=self._settings.local_steps),
                id=item.workflow_id,
                task_queue=self._settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=self.summary(item),
                static_details=f"from {item.stream} entry {item.entry_id} ({item.envelope} envelope)",
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
        """`graph g · node n`, plus mode and model when the envelope carries the config."""
        if item.config is None:
            return node_summary(item.graph_id, item.node_id)
        try:
            mode = detect_mode(item.config)
        except ContractError:
            return node_summary(item.graph_id, item.node_id)
        model = (item.config.get("llm_config") or {}).get("model") or self._settings.llm_model
        return node_summary(item.graph_id, item.node_id, mode, model)

    async def dead_letter(
        self, entry: _Entry, reason: str, graph_id: str | None, node_id: str | None, *, malformed: bool = True
    ) -> None:
        """Dead-letter entry, `node.failed` (ids permitting) and XACK in one transaction."""
        stream, entry_id, fields = entry.stream, entry.entry_id, entry.fields or {}
        now = datetime.now(UTC)
        record = {  # the entry's own fields first: ours (stream, reason...) must not be forged by it
            **{text(k): v for k, v in fields.items()},
            "stream": stream,
            "entry_id": entry_id,
            "reason": reason,
            "consumer": self._consumer,
            "deliveries": str(entry.deliveries),
            "at": now.isoformat(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._settings.dead_letter_stream, record)
            if graph_id and node_id:
                event = ResultEvent.failure(
                    graph_id=graph_id,
                    node_id=node_id,
                    error=f"{'malformed work item' if malformed else 'work item not started'}: {reason}",
                    event_id=str(uuid.uuid4()),
                    at=now,
                    failures_as_completed=self._settings.report_failures_on_completed,
                    source_stream=stream,
                    source_entry_id=entry_id,
                )
                pipe.xadd(self._settings.result_stream("failed"), {"data": event.model_dump_json()})
            pipe.xack(stream, self._group, entry_id)
            await pipe.execute()
        self._metrics.dead_lettered.add(1)
        ids = {"stream": stream, "entry_id": entry_id, "graph_id": graph_id, "node_id": node_id}
        log.warning("dead-lettered %s %s: %s", stream, entry_id, reason, extra={k: v for k, v in ids.items() if v})
