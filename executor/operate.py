"""Operator commands: status, tail, show, cancel, dead letters, re-runs, and the approval of tool calls."""

from __future__ import annotations

import asyncio
import json
import sys

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from adapters import history, redis_client, result_marker, result_stream, temporal_client
from adapters.claim_check import ClaimCheckMissing
from adapters.redis_client import as_str
from adapters.settings import Settings
from core import keys, search_attributes
from core.errors import ContractError
from core.result_event import NodeOutcome
from core.step_io import ApprovalDecision, NodeInput
from core.work_item import parse_work_entry
from executor import deployment

EXIT_FAILED = 1
STATUS_TIMEOUT = 5.0  # seconds status waits for a service before calling it unreachable


async def _finished_as(handle: WorkflowHandle) -> str | None:
    """How a node ended (`completed`, `failed`, ...), or None while it runs. A cancelled node
    reported node.failed, and a node past its deadline completes its workflow with a failed
    outcome: the outcome, not the workflow status, is what the operator knows it by."""
    described = await handle.describe()
    status = described.status
    if status is None or status == WorkflowExecutionStatus.RUNNING:
        return None
    if status == WorkflowExecutionStatus.COMPLETED:
        return (await handle.result()).status
    if status == WorkflowExecutionStatus.CANCELED:
        return "failed"
    return status.name.lower()


async def approvals(settings: Settings, workflow_id: str) -> int:
    client = await temporal_client.connect(settings)
    handle = client.get_workflow_handle(workflow_id, result_type=NodeOutcome)
    try:
        waiting = await handle.query("pending_approvals")
        finished = None if waiting else await _finished_as(handle)
    except RPCError as exc:
        print(f"error: {exc.message}")
        return EXIT_FAILED
    if finished:
        print(f"node {workflow_id} has already finished ({finished}): no tool call is waiting for approval")
    elif not waiting:
        print("no tool call is waiting for approval")
    for call in waiting:
        print(f"{call['call_id']}  iteration {call['iteration']}  {call['tool']} {json.dumps(call['input'], ensure_ascii=False)}")
    return 0


async def decide(settings: Settings, workflow_id: str, call_id: str, approve: bool, reason: str | None, by: str | None) -> int:
    """Send the decision; when it is refused, say whether that is because the node has ended
    (asked after the fact, the update fails with a bare `workflow execution already completed`)."""
    client = await temporal_client.connect(settings)
    handle = client.get_workflow_handle(workflow_id, result_type=NodeOutcome)
    # The SDK gives update handlers no caller identity: send the client's along (docs/agent.md).
    decision = ApprovalDecision(call_id=call_id, approve=approve, reason=reason, by=by, identity=client.identity)
    try:
        verdict = await handle.execute_update("decide", decision)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        cause = getattr(exc, "cause", None)
        refusal = getattr(cause, "message", None) or getattr(exc, "message", None) or str(exc)
        try:
            finished = await _finished_as(handle)
        except RPCError:
            finished = None  # no such workflow, or Temporal gone: the refusal says it
        if finished:
            print(f"node {workflow_id} has already finished ({finished}): nothing to approve")
        else:
            print(f"error: {refusal}")
        return EXIT_FAILED
    print(f"{call_id}: {verdict}")
    return 0


# -- status, tail, show, cancel, dead letters -------------------------------------------------


async def status(settings: Settings, as_json: bool = False) -> int:
    """Is everything reachable, and how much work is where."""
    report: dict[str, object] = {}
    redis = redis_client.connect(settings, retries=0)
    try:
        try:
            await redis.ping()
            report["redis"] = "ok"
            streams = {}
            for stream in settings.work_streams:
                info: dict[str, object] = {"length": await redis.xlen(stream)}
                try:
                    for group in await redis.xinfo_groups(stream):
                        if as_str(group["name"]) == settings.consumer_group:
                            info.update(pending=group["pending"], lag=group.get("lag"), consumers=group["consumers"])
                except ResponseError:
                    info["group"] = "missing"
                streams[stream] = info
            report["streams"] = streams
            report["dead_letters"] = await redis.xlen(settings.dead_letter_stream)
        except (RedisError, OSError) as exc:
            report["redis"] = f"unreachable: {exc}"
    finally:
        await redis.aclose()
    try:
        client = await asyncio.wait_for(temporal_client.connect(settings), STATUS_TIMEOUT)
        await client.service_client.check_health()
        report["temporal"] = "ok"
        running = await client.count_workflows("WorkflowType = 'NodeWorkflow' AND ExecutionStatus = 'Running'")
        report["running_nodes"] = running.count
        report["worker_versions"] = await deployment.versions_report(client, settings)
    except (RuntimeError, RPCError, TimeoutError) as exc:
        report["temporal"] = f"unreachable: {exc or 'no answer within ' + str(STATUS_TIMEOUT) + 's'}"
    healthy = report.get("redis") == "ok" and report.get("temporal") == "ok"
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return 0 if healthy else EXIT_FAILED
    print(f"temporal      {report['temporal']} ({settings.temporal_address}, namespace {settings.temporal_namespace})")
    print(f"redis         {report['redis']} ({settings.redis_addr})")
    for stream, info in (report.get("streams") or {}).items():  # type: ignore[union-attr]
        print(f"stream        {stream}: length {info.get('length')}, pending {info.get('pending', '-')}, lag {info.get('lag', '-')}, consumers {info.get('consumers', '-')}")
    if "dead_letters" in report:
        print(f"dead letters  {report['dead_letters']} in {settings.dead_letter_stream}")
    if "running_nodes" in report:
        print(f"running nodes {report['running_nodes']}")
    for row in report.get("worker_versions") or []:  # type: ignore[union-attr]
        open_nodes = f", {row['open_nodes']} open nodes" if "open_nodes" in row else ""
        print(f"build id      {row['build_id']} ({row['status']}): {len(row['pollers'])} workers polling{open_nodes}")  # type: ignore[arg-type]
    return 0 if healthy else EXIT_FAILED


def _summary(event: dict) -> str:
    data = event.get("data") or {}
    detail = f"error: {data['error']}" if "error" in data else f"output: {json.dumps(data.get('output'), ensure_ascii=False)}"
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return f"{event.get('timestamp')} {event.get('type')} {event.get('graph_id')}/{event.get('node_id')} {detail}"


async def tail(settings: Settings, from_start: bool, count: int | None, as_json: bool) -> int:
    """Follow result events as they are written."""
    redis = redis_client.connect(settings)
    streams = [settings.completed_stream, settings.failed_stream]
    cursor = result_stream.at_start(streams) if from_start else await result_stream.at_end(redis, streams)
    print(f"following {', '.join(cursor)} from {'the start' if from_start else 'now'}", file=sys.stderr, flush=True)
    seen = 0
    try:
        async for _, event in result_stream.follow(redis, cursor):
            print(json.dumps(event, ensure_ascii=False) if as_json else _summary(event), flush=True)
            seen += 1
            if count is not None and seen >= count:
                break
    finally:
        await redis.aclose()
    return 0


async def show(settings: Settings, workflow_id: str) -> int:
    """A node's state, progress and result."""
    client = await temporal_client.connect(settings)
    handle = client.get_workflow_handle(workflow_id, result_type=NodeOutcome)
    try:
        described = await handle.describe()
    except RPCError as exc:
        print(f"error: {exc.message}")
        return EXIT_FAILED
    report: dict[str, object] = {
        "workflow_id": workflow_id,
        "run_id": described.run_id,
        "status": described.status.name if described.status else None,
        "summary": await described.static_summary(),
        "started": described.start_time,
        "closed": described.close_time,
    }
    if described.status and described.status.name == "RUNNING":
        report["progress"] = await handle.query("progress")
    elif described.status and described.status.name == "COMPLETED":
        report["outcome"] = (await handle.result()).model_dump(mode="json")
    print(json.dumps(report, indent=2, default=str, ensure_ascii=False))
    return 0


async def cancel(settings: Settings, workflow_id: str) -> int:
    client = await temporal_client.connect(settings)
    try:
        await client.get_workflow_handle(workflow_id).cancel()
    except RPCError as exc:
        print(f"error: {exc.message}")
        return EXIT_FAILED
    print(f"cancellation requested for {workflow_id}; the node will report node.failed")
    return 0


async def dead_letters(settings: Settings, requeue: list[str], requeue_all: bool) -> int:
    """List dead-lettered entries, or put them back on their stream after a fix."""
    redis = redis_client.connect(settings)
    try:
        entries = await redis.xrange(settings.dead_letter_stream)
        if not requeue and not requeue_all:
            for entry_id, fields in entries:
                f = {as_str(k): as_str(v, errors="replace") for k, v in fields.items()}
                print(f"{as_str(entry_id)}  {f.get('stream')} {f.get('entry_id')}  {f.get('reason')}")
            if not entries:
                print("no dead letters")
            return 0
        chosen = [(eid, f) for eid, f in entries if requeue_all or as_str(eid) in requeue]
        missing = set(requeue) - {as_str(eid) for eid, _ in chosen}
        if missing:
            print(f"error: no dead letter {', '.join(sorted(missing))}")
            return EXIT_FAILED
        for entry_id, fields in chosen:
            stream = as_str(fields[b"stream"])
            data = fields.get(b"data", b"")
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, {"data": data})
                pipe.xdel(settings.dead_letter_stream, entry_id)
                # Its `node.failed` reserved the work item's emitted marker: a requeue is the
                # operator's word that the node runs again and reports again.
                marker = _marker_of(data, stream, settings)
                if marker is not None:
                    pipe.delete(marker)
                new_id, *_ = await pipe.execute()
            print(f"requeued {as_str(entry_id)} to {stream} as {as_str(new_id)}")
        return 0
    finally:
        await redis.aclose()


def _marker_of(data: bytes, stream: str, settings: Settings) -> str | None:
    """The emitted marker of the work item in a dead letter, when its workflow id outlives the
    requeue (an envelope `id`); None when the entry does not parse or gets a new id."""
    try:
        item = parse_work_entry({b"data": data}, stream=stream, entry_id="0-0", max_bytes=settings.max_entry_bytes)
    except ContractError:
        return None
    return keys.emitted_marker(item.workflow_id) if item.event_id else None


# -- rerun --------------------------------------------------------------------------------------

# Ended without a result the orchestrator could use (the watchdog reported them as node.failed).
_RERUNNABLE = {WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT, WorkflowExecutionStatus.FAILED}
# Ended by emitting their result: a re-run writes a second one, so only with --force.
_EMITTED = {WorkflowExecutionStatus.COMPLETED: "completed", WorkflowExecutionStatus.CANCELED: "was cancelled"}


async def rerun(settings: Settings, workflow_id: str, force: bool = False) -> int:
    """Run a node again under its workflow id: the original work item (from the first history
    event; an agent's carried-over state is dropped), its emitted marker cleared so the new run
    can emit. Held under the report lease, so the watchdog never reports the old run in between."""
    client = await temporal_client.connect(settings)
    redis = redis_client.connect(settings)
    try:
        async with result_marker.lease(redis, workflow_id, wait=10) as held:
            if not held:
                print(f"refused: {workflow_id} is being reported by the watchdog or re-run by someone else; try again")
                return EXIT_FAILED
            return await _rerun(client, redis, settings, workflow_id, force)
    finally:
        await redis.aclose()


async def _rerun(client: Client, redis: Redis, settings: Settings, workflow_id: str, force: bool) -> int:
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        print(f"error: no workflow {workflow_id}" if exc.status == RPCStatusCode.NOT_FOUND else f"error: {exc.message}")
        return EXIT_FAILED
    status = described.status
    if status in _EMITTED and not force:
        print(f"refused: {workflow_id} {_EMITTED[status]} and emitted its result; --force runs it again (a second result event)")
        return EXIT_FAILED
    if status not in _RERUNNABLE and status not in _EMITTED:
        print(f"refused: {workflow_id} is running; cancel it or let it end first")
        return EXIT_FAILED
    try:
        original = await history.node_input(client, workflow_id, described.run_id)
        summary = await described.static_summary()
    except (ClaimCheckMissing, ValueError, LookupError) as exc:
        print(f"error: cannot read the input of {workflow_id}: {exc}")
        return EXIT_FAILED
    # what the ingress would set for this work item, when the namespace has them (the old run
    # has some); not copied from the old run, whose mode and model its graph state may have changed
    attributes = None
    if described.typed_search_attributes.get(search_attributes.GRAPH_ID) is not None:
        item = original.item
        attributes = search_attributes.at_start(item.graph_id, item.node_id, *search_attributes.labels(item.config, settings.llm_model))
    marker = keys.emitted_marker(workflow_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(marker)
        pipe.pttl(marker)
        pipe.delete(marker)
        cleared, ttl_ms, _ = await pipe.execute()
    started = None
    try:
        started = await client.start_workflow(
            "NodeWorkflow",
            # a new run under today's settings, like one the ingress starts
            NodeInput(item=original.item, local_reads=settings.local_steps, attributes_at_start=attributes is not None),
            id=workflow_id,
            search_attributes=attributes,
            task_queue=described.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,  # an explicit operator action
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=summary,
            static_details=f"re-run of run {described.run_id} ({status.name}) with `executor rerun`",
        )
    finally:
        if started is None and cleared is not None:  # not started: the old run's marker stands again
            await redis.set(marker, cleared, px=ttl_ms if ttl_ms > 0 else settings.emitted_marker_ttl_seconds * 1000)
    was = f"emitted marker cleared (it named {as_str(cleared)})" if cleared is not None else "no emitted marker to clear"
    print(f"re-running {workflow_id}: run {described.run_id} ended {status.name}; {was}; new run {started.result_run_id}")
    return 0

