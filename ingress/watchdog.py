"""Watchdog: no node hangs in silence. A NodeWorkflow that stops for good without emitting gets
exactly one `node.failed` naming the cause, within a bounded time.

The workflow emits on every ending it sees (result, failure, deadline, cancellation), but some
endings it never sees: an operator terminates it, a Temporal timeout closes it, or its workflow
task fails on every attempt (non-determinism after a deploy, a claim-checked payload gone from
Redis) so its code never runs again. The orchestrator would wait for ever.

Every `WATCHDOG_INTERVAL` seconds, in every ingress replica (the emitted marker lets one report
through), for the NodeWorkflows of our task queue:

1. Closed without a result. One visibility query lists runs closed as Terminated, TimedOut,
   Failed or Canceled since the previous pass (less `VISIBILITY_LAG`, as visibility records
   arrive late; at start, `WATCHDOG_LOOKBACK` back). Their markers are read in one MGET; a run
   without one that is still the latest run of its id (not re-run since) is reported with the
   cause its closing event names: who terminated it and why, the failure, the timeout.
2. Stuck. Temporal (server 1.30+) flags a running workflow whose workflow task failed N times in
   a row with the `TemporalReportedProblems` search attribute (dynamic config
   `system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute`, default 5): one query
   finds them all, however many workflows run. For each, DescribeWorkflowExecution confirms the
   task is still being retried, and the newest history events say since when and why (the first
   failure of a streak is recorded, the later attempts are not). Failing for `STUCK_AFTER`: the
   node is reported with that reason, then the run is terminated, so `rerun` can start it again.
3. Stranded (versioned workers, ingress/stranded.py). A running node pinned to a worker version
   that no worker has polled for `STRANDED_AFTER` (its workers were stopped before it drained), or
   not started yet while the deployment's current version has had no worker that long, would wait
   for ever: reported naming the version and what to do, then terminated. At most
   `STRANDED_PER_PASS` runs of each kind per pass; the rest come next pass.

Reports are written with the emit activity's reservation (adapters/result_marker.py), under a
lease shared with `rerun`. A run that keeps failing because of an outage (Redis down, so no
claim-checked payload can be read) also looks stuck: `STUCK_AFTER` must be longer than the
outages the executor should ride out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as redis
from redis.exceptions import RedisError
from temporalio.api.enums.v1 import EventType, TimeoutType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from adapters import history, result_marker
from ingress import stranded
from core import keys
from core import search_attributes as sa
from adapters.claim_check import ClaimCheckMissing
from adapters.settings import Settings
from core.result_event import ResultEvent

log = logging.getLogger(__name__)

VISIBILITY_LAG = timedelta(minutes=5)
PROBLEMS = ("category=WorkflowTaskFailed", "category=WorkflowTaskTimedOut")
MAX_CAUSE = 1000  # characters of a failure message kept in the event and the termination reason
_EVENT_IDS = uuid.UUID("6f1d2f0e-3c52-4a53-9a8e-2f3f8c1b7d10")  # one event id per reported run

_TASK_OUTCOMES = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
# The events that close a run; the newest few are read to find it, since one page of the reverse
# history does not always start at the very last event of the batch that closed the run.
_CLOSING_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
}
CLOSING_LOOKBACK = 10
STRANDED_PER_PASS = 200  # stranded runs settled per version and pass (each costs a describe, a report, a terminate)
NONDETERMINISM = "[TMPRL1100]"  # temporalio's code for a history the worker's code no longer matches
_CLOSED_CAUSES = {
    WorkflowExecutionStatus.TIMED_OUT: "workflow timed out (its Temporal execution or run timeout)",
    WorkflowExecutionStatus.CANCELED: "workflow cancelled before it emitted a result",
}


# -- reading a history (pure) ----------------------------------------------------------------


def closed_cause(status: WorkflowExecutionStatus, closing: HistoryEvent | None) -> str:
    """What a closed run's `node.failed` says, from its status and closing event."""
    if status == WorkflowExecutionStatus.TERMINATED:
        attrs = closing.workflow_execution_terminated_event_attributes if closing is not None else None
        who = f" by {attrs.identity}" if attrs is not None and attrs.identity else ""
        why = attrs.reason if attrs is not None and attrs.reason else "no reason given"
        return f"workflow terminated{who}: {_clip(why)}"
    if status == WorkflowExecutionStatus.FAILED:
        message = closing.workflow_execution_failed_event_attributes.failure.message if closing is not None else ""
        if NONDETERMINISM in message:  # failed by the worker (workflow_failure_exception_types), not retried for ever
            return f"workflow failed: nondeterminism: its history does not match the deployed code (docs/upgrades.md): {_clip(message)}"
        return f"workflow failed: {_clip(message or 'no message')}"
    return _CLOSED_CAUSES.get(status, f"workflow closed as {status.name.lower()} without a result")


@dataclass(frozen=True)
class TaskFailure:
    since: datetime  # the first failure of the current streak
    cause: str


def task_failure(newest_first: Iterable[HistoryEvent]) -> TaskFailure | None:
    """The workflow task failure a run is stuck on: its newest workflow task outcome, when that
    is a failure or a timeout. None when the newest outcome is a completed task (it recovered)."""
    for event in newest_first:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return None
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attrs = event.workflow_task_failed_event_attributes
            cause = _enum_words(WorkflowTaskFailedCause.Name(attrs.cause), "WORKFLOW_TASK_FAILED_CAUSE_")
            return TaskFailure(_time(event), _clip(attrs.failure.message or f"workflow task failed: {cause}"))
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            timeout = _enum_words(TimeoutType.Name(event.workflow_task_timed_out_event_attributes.timeout_type), "TIMEOUT_TYPE_")
            return TaskFailure(_time(event), f"workflow task timed out ({timeout}): the worker never answered")
    return None


async def readable(event: HistoryEvent, converter: DataConverter) -> HistoryEvent:
    """The event with its failure's own message: with payload encryption on, a failure's message
    and stack trace travel encrypted in its encoded attributes (the history shows "Encoded
    failure"), and only the data converter with the keys reads them. Changed in place."""
    for attrs in (event.workflow_execution_failed_event_attributes, event.workflow_task_failed_event_attributes):
        failure = attrs.failure
        if not failure.HasField("encoded_attributes"):
            continue
        try:
            decoded = await converter.decode_failure(failure)
        except Exception as exc:  # never die of one history: a failure we cannot decrypt keeps its placeholder, says why
            failure.message = f"{failure.message} (not readable here: {exc})"
            continue
        failure.message = getattr(decoded, "message", None) or str(decoded)
    return event


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _enum_words(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower().replace("_", " ")


def _clip(message: str) -> str:
    return message if len(message) <= MAX_CAUSE else message[: MAX_CAUSE - 3] + "..."


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- the watchdog ------------------------------------------------------------------------------


class Watchdog:
    def __init__(self, redis_client: redis.Redis, temporal: Client, settings: Settings):
        self._redis = redis_client
        self._temporal = temporal
        self._settings = settings
        self._closed_since = datetime.now(UTC) - timedelta(seconds=settings.watchdog_lookback)
        self._problems_flagged: bool | None = None  # does Temporal flag failing workflow tasks?
        self._unserved = stranded.UnservedClock()  # since when each worker version has had no worker
        nodes = f"WorkflowType = 'NodeWorkflow' AND TaskQueue = '{settings.temporal_task_queue}'"
        self._closed_query = nodes + " AND ExecutionStatus IN ('Terminated', 'TimedOut', 'Failed', 'Canceled')"
        self._running_query = nodes + " AND ExecutionStatus = 'Running'"
        self._stuck_query = (
            nodes + " AND ExecutionStatus = 'Running' AND TemporalReportedProblems IN (" + ", ".join(f"'{p}'" for p in PROBLEMS) + ")"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every `WATCHDOG_INTERVAL` seconds until `stop` is set (0: the watchdog is off)."""
        interval = self._settings.watchdog_interval
        if not interval:
            log.info("watchdog off (WATCHDOG_INTERVAL=0)")
            return
        log.info(
            "watchdog: a pass every %gs; workflow tasks failing for %gs count as stuck, versions without workers for %gs as stranded",
            interval, self._settings.stuck_after, self._settings.stranded_after,
        )
        while not stop.is_set():
            await self.sweep()
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    async def sweep(self) -> None:
        """One pass. Temporal or Redis unavailable: logged, and the next pass tries again."""
        started = datetime.now(UTC)
        try:
            await self.check_closed(started)
            if self._problems_flagged is None:
                self._problems_flagged = await self._temporal_flags_problems()
            if self._problems_flagged:
                await self.check_stuck()
            if self._settings.worker_versioning:
                await self.check_stranded()
        except (RPCError, RedisError, OSError) as exc:
            log.warning("watchdog: %s; next pass in %gs", exc, self._settings.watchdog_interval)

    # -- closed runs ---------------------------------------------------------------------------
    async def check_closed(self, started: datetime) -> None:
        query = f"{self._closed_query} AND CloseTime >= '{_rfc3339(self._closed_since)}'"
        runs = [run async for run in self._temporal.list_workflows(query)]
        unreported: list[datetime] = []
        for run, marker in zip(runs, await self._markers(runs)):
            if marker is None and not await self._settle(self.report_closed, run):
                unreported.append(run.close_time or started)
        # Look again next pass from here: late visibility records, and runs not settled this time.
        self._closed_since = max(self._closed_since, min([started - VISIBILITY_LAG, *unreported]))

    async def _markers(self, runs: list[WorkflowExecution]) -> list[bytes | None]:
        found: list[bytes | None] = []
        for start in range(0, len(runs), 500):
            found += await self._redis.mget([keys.emitted_marker(run.id) for run in runs[start : start + 500]])
        return found

    async def report_closed(self, run: WorkflowExecution) -> None:
        async with result_marker.lease(self._redis, run.id) as held:
            if not held:
                log.info("watchdog: %s is being reported or re-run elsewhere", run.id, extra=_ids(run))
                return
            latest = await self._temporal.get_workflow_handle(run.id).describe()
            if latest.run_id != run.run_id:
                return  # re-run since: the new run reports for itself
            assert run.status is not None  # closed runs have one
            closing = None
            async for event in history.newest_first(self._temporal, run.id, run.run_id, limit=CLOSING_LOOKBACK):
                if event.event_type in _CLOSING_EVENTS:
                    closing = await readable(event, self._temporal.data_converter)
                    break
            await self._report(latest, closed_cause(run.status, closing))

    # -- stuck runs ----------------------------------------------------------------------------
    async def check_stuck(self) -> None:
        async for run in self._temporal.list_workflows(self._stuck_query):
            await self._settle(self.settle_stuck, run)

    async def settle_stuck(self, run: WorkflowExecution) -> None:
        """Report and terminate the run when its workflow task has failed for `STUCK_AFTER`."""
        async with result_marker.lease(self._redis, run.id) as held:
            if not held:
                return
            handle = self._temporal.get_workflow_handle(run.id, run_id=run.run_id)
            described = await handle.describe()
            pending = described.raw_description
            if described.status != WorkflowExecutionStatus.RUNNING or not pending.HasField("pending_workflow_task"):
                return  # closed or recovered since the query
            attempt = pending.pending_workflow_task.attempt
            if attempt < 2:
                return  # its last task did not fail
            failure = task_failure(await self._back_to_last_task(run))
            if failure is None:
                return
            failing_for = (datetime.now(UTC) - failure.since).total_seconds()
            if failing_for < self._settings.stuck_after:
                return
            what = f"workflow task failing for {failing_for:.0f}s (attempt {attempt})"
            await self._report_and_terminate(handle, described, f"{what}, terminated by the watchdog: {failure.cause}", f"{what}: {failure.cause}")

    # -- stranded runs -------------------------------------------------------------------------
    async def check_stranded(self) -> None:
        """Nodes pinned to a worker version no worker has polled for `STRANDED_AFTER`, and nodes never
        started while the current version has had none that long (ingress/stranded.py). The
        deployment itself (a busy entity: too many reads make the server refuse them) is read only
        when a node has waited `STRANDED_AFTER` for its first workflow task."""
        name, queue = self._settings.worker_deployment_name, self._settings.temporal_task_queue
        now = datetime.now(UTC)
        served = await stranded.served(self._temporal, queue, name)
        serving = sorted(build for build, until in served.items() if until > now)
        # Pinned to a version without workers now: normally none, one empty visibility query.
        query = f"{self._running_query} AND TemporalWorkerDeployment = '{name}'"
        if serving:
            query += " AND TemporalWorkerDeploymentVersion NOT IN (" + ", ".join(f"'{name}:{b}'" for b in serving) + ")"
        pinned: dict[str, list[WorkflowExecution]] = {}
        async for run in self._temporal.list_workflows(query, limit=STRANDED_PER_PASS):
            build = stranded.listed_build(run.search_attributes, name)  # visibility has no versioning info: its attributes
            if build is not None and build not in serving:
                pinned.setdefault(build, []).append(run)
        # Never started, for STRANDED_AFTER: waiting for the current version.
        cutoff = _rfc3339(now - timedelta(seconds=self._settings.stranded_after))
        unstarted_query = f"{self._running_query} AND TemporalWorkerDeployment IS NULL AND StartTime < '{cutoff}'"
        current = None
        if [run async for run in self._temporal.list_workflows(unstarted_query, limit=1)]:
            current = await stranded.current_version(self._temporal, name)
        watched = set(pinned) | ({current} if current is not None and current not in serving else set())
        unserved = self._unserved.unserved_for(sorted(watched), served, now)
        for build, runs in pinned.items():
            if unserved[build] >= self._settings.stranded_after:
                cause = stranded.pinned_cause(name, build, unserved[build], serving, current)
                for run in runs:
                    await self._settle(lambda r, b=build, c=cause: self.settle_stranded(r, b, c), run)  # type: ignore[misc]
        if current is not None and unserved.get(current, 0.0) >= self._settings.stranded_after:
            cause = stranded.unstarted_cause(name, current, unserved[current], serving, current)
            async for run in self._temporal.list_workflows(unstarted_query, limit=STRANDED_PER_PASS):
                await self._settle(lambda r, c=cause: self.settle_stranded(r, None, c), run)  # type: ignore[misc]

    async def settle_stranded(self, run: WorkflowExecution, build: str | None, cause: str) -> None:
        """Report and terminate `run` if it is still running on `build`, or (None) still waiting
        for its first workflow task since `STRANDED_AFTER` ago on no version."""
        async with result_marker.lease(self._redis, run.id) as held:
            if not held:
                return
            handle = self._temporal.get_workflow_handle(run.id, run_id=run.run_id)
            described = await handle.describe()
            raw = described.raw_description
            if described.status != WorkflowExecutionStatus.RUNNING or stranded.effective_build(raw.workflow_execution_info.versioning_info) != build:
                return  # closed, started, or moved to another version since the query
            if build is None and not stranded.waiting_since(raw, datetime.now(UTC) - timedelta(seconds=self._settings.stranded_after)):
                return  # an unversioned run being served, or a task scheduled only now
            await self._report_and_terminate(handle, described, cause, cause)

    async def _report_and_terminate(self, handle: WorkflowHandle, run: WorkflowExecution, error: str, reason: str) -> None:
        """The run's one `node.failed`, then its end: a run that cannot progress never hangs."""
        await self._report(run, error)
        try:
            await handle.terminate(reason=f"watchdog: {reason}")
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return  # it closed meanwhile
        log.warning("watchdog: terminated %s: %s", run.id, reason, extra=_ids(run))

    async def _back_to_last_task(self, run: WorkflowExecution) -> list[HistoryEvent]:
        """The newest events, back to the newest workflow task outcome (usually a page)."""
        events = []
        async for event in history.newest_first(self._temporal, run.id, run.run_id):
            events.append(await readable(event, self._temporal.data_converter))
            if event.event_type in _TASK_OUTCOMES:
                break
        return events

    # -- reporting -----------------------------------------------------------------------------
    async def _report(self, run: WorkflowExecution, error: str) -> None:
        graph_id, node_id = await self._node_ids(run)
        event = ResultEvent.failure(
            graph_id=graph_id,
            node_id=node_id,
            error=error,
            event_id=str(uuid.uuid5(_EVENT_IDS, run.run_id)),
            at=datetime.now(UTC),
            failures_as_completed=self._settings.report_failures_on_completed,
            workflow_id=run.id,
            run_id=run.run_id,
            mode=run.typed_search_attributes.get(sa.MODE),
            reported_by="watchdog",
        )
        stream = self._settings.result_stream("failed")
        done = await result_marker.write_once(self._redis, run.id, stream, event, self._settings.emitted_marker_ttl_seconds)
        if done.written:
            log.warning("watchdog: reported node.failed for %s: %s", run.id, error, extra=_ids(run))
        else:
            log.info("watchdog: %s already emitted its result to %s; nothing to report", run.id, done.stream, extra=_ids(run))

    async def _node_ids(self, run: WorkflowExecution) -> tuple[str, str]:
        """Graph and node: from the search attributes (set once resolved), else the run's input,
        else the workflow id (`node:<graph>:<node>:<key>`, ambiguous if the ids hold colons)."""
        graph_id, node_id = run.typed_search_attributes.get(sa.GRAPH_ID), run.typed_search_attributes.get(sa.NODE_ID)
        if graph_id and node_id:
            return graph_id, node_id
        try:
            item = (await history.node_input(self._temporal, run.id, run.run_id)).item
            return item.graph_id, item.node_id
        except (ClaimCheckMissing, ValueError, LookupError) as exc:
            log.warning("watchdog: input of %s unreadable (%s); ids taken from the workflow id", run.id, exc, extra=_ids(run))
        _, graph_id, node_id, _ = (run.id.split(":", 3) + ["", "", "", ""])[:4]
        return graph_id or run.id, node_id or run.id

    async def _settle(self, settle: Callable[[WorkflowExecution], Awaitable[None]], run: WorkflowExecution) -> bool:
        """Settle one run; False when it could not be settled this pass."""
        try:
            await settle(run)
            return True
        except (RPCError, RedisError, OSError) as exc:
            log.warning("watchdog: could not settle %s (%s); next pass", run.id, exc, extra=_ids(run))
        except Exception:  # noqa: BLE001 - never die of one item: the other runs still get checked
            log.exception("watchdog: could not settle %s; next pass", run.id, extra=_ids(run))
        return False

    async def _temporal_flags_problems(self) -> bool:
        reply = await self._temporal.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=self._temporal.namespace))
        if reply.namespace_info.capabilities.reported_problems_search_attribute:
            return True
        log.warning(
            "watchdog: Temporal does not flag workflows whose tasks keep failing (TemporalReportedProblems, server 1.30+ with "
            "dynamic config system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute > 0): stuck workflows will "
            "not be found; closed ones still are"
        )
        return False


def _ids(run: WorkflowExecution) -> dict[str, str]:
    return {"workflow_id": run.id, "run_id": run.run_id}
