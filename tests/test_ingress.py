"""The ingress's own guarantees, through real ingress processes on the shared stack: exactly one
result event per work item when the dead-letter path and a workflow race, and where the consumer
group starts on a stream that already holds entries.

Each test runs an extra ingress on a stream of its own (so it can play other consumers and set
its own limits without disturbing the shared ingress), then stops it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from core.work_item import WorkItem
from core.step_io import NodeInput
from tests.support.stack import Stack, wait_until

GROUP = "executor-workers"
CALC = {"tool_name": "calculate", "tool_params": {"expression": "6*7"}}


@contextmanager
def own_ingress(stack: Stack, stream: str, **env: str) -> Iterator[str]:
    """An ingress reading only `stream`; yields its name (its log lines start with `[name] `)."""
    name = f"ingress-{uuid.uuid4().hex[:6]}"
    stack.start_service("ingress", name, WORK_STREAMS=stream, **env)
    try:
        wait_until(lambda: stack.http_get(name, "/ready")[0] == 200, timeout=60, message=f"{name} ready")
        yield name
    finally:
        stack.procs.pop(name).stop()


def log_lines(stack: Stack, name: str) -> list[str]:
    with open(stack.log.name, errors="replace") as log:
        return [line for line in log if line.startswith(f"[{name}] ")]


def delivered_three_times(stack: Stack, stream: str, doc: dict) -> str:
    """An entry two consumers read and abandoned (they died): its next delivery is the third."""
    stack.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entry_id = stack.redis.xadd(stream, {"data": json.dumps(doc)})
    stack.redis.xreadgroup(GROUP, "ghost-1", {stream: ">"}, count=1)
    stack.redis.xclaim(stream, GROUP, "ghost-2", 0, [entry_id])
    return entry_id


def work_item(stream: str, graph: str, event_id: str) -> WorkItem:
    return WorkItem(graph_id=graph, node_id="n1", envelope="executor", event_id=event_id, stream=stream, entry_id="0-1", config=CALC)


def run_workflow(stack: Stack, item: WorkItem) -> str:
    """Start the node's workflow directly, as another ingress replica whose start succeeded."""
    from workflows.node import NodeWorkflow

    async def start(client) -> str:
        handle = await client.start_workflow(NodeWorkflow.run, NodeInput(item=item), id=item.workflow_id, task_queue=stack.task_queue)
        await handle.result()
        return (await handle.describe()).status.name

    return stack.temporal(start)


# Poison limits for the extra ingress: the third delivery is past the limit, reclaimed at once.
POISON = {"MAX_DELIVERIES": "1", "RECLAIM_IDLE_MS": "100", "RECLAIM_INTERVAL_MS": "100"}


def test_dead_letter_after_the_workflow_reported_adds_no_second_event(stack: Stack) -> None:
    """Replica A's workflow ran and reported; replica B, which saw no workflow, dead-letters the
    same work item: B finds the emitted-marker and writes nothing."""
    stream, graph, event_id = f"work-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    item = work_item(stream, graph, event_id)
    assert run_workflow(stack, item) == "COMPLETED"
    assert [e["type"] for e in stack.events(graph, "n1")] == ["node.completed"]

    async def delete(client) -> None:  # B's view: no workflow (retention removed it, or B looked too early)
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

        await client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(namespace="default", workflow_execution=WorkflowExecution(workflow_id=item.workflow_id))
        )

    stack.temporal(delete)
    wait_until(lambda: stack.query(item.workflow_id, "progress") is None, timeout=60, message="workflow gone")
    entry_id = delivered_three_times(stack, stream, {"id": event_id, "graph_id": graph, "node_id": "n1", "config": CALC})
    with own_ingress(stack, stream, **POISON) as name:
        wait_until(lambda: stack.pending(stream) == 0, timeout=60, message="entry acked")
        time.sleep(1)
        assert [e["type"] for e in stack.events(graph, "n1")] == ["node.completed"]
        assert any("already reported" in line and entry_id in line for line in log_lines(stack, name))
    assert not [d for d in stack.dead_letters() if d["entry_id"] == entry_id]


def test_workflow_started_after_a_dead_letter_adds_no_second_event(stack: Stack) -> None:
    """Replica B dead-letters the work item (node.failed); replica A's start then succeeds and its
    workflow runs: its emit finds the marker B set, so the orchestrator hears exactly once."""
    stream, graph, event_id = f"work-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    entry_id = delivered_three_times(stack, stream, {"id": event_id, "graph_id": graph, "node_id": "n1", "config": CALC})
    with own_ingress(stack, stream, **POISON):
        event = stack.wait_event(graph, "n1", timeout=60)
    assert event["type"] == "node.failed" and event["data"]["error"].startswith("work item not started: delivered 3 times")
    item = work_item(stream, graph, event_id)
    assert run_workflow(stack, item) == "COMPLETED"
    time.sleep(1)
    assert [e["type"] for e in stack.events(graph, "n1")] == ["node.failed"]
    assert stack.redis.get(f"executor:emitted:{item.workflow_id}") == "dago:events:node.failed"
    [dead] = [d for d in stack.dead_letters() if d["entry_id"] == entry_id]
    assert dead["reason"].startswith("delivered 3 times")


def test_a_restart_counts_one_delivery_of_what_the_process_inherited(stack: Stack) -> None:
    """Outages do not count as deliveries (test_ingress_outages), but a process start does: an
    entry that kills whoever reads it still reaches MAX_DELIVERIES after that many restarts."""
    stream, graph = f"work-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    name = f"ingress-{uuid.uuid4().hex[:6]}"
    stack.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entry_id = stack.redis.xadd(stream, {"data": json.dumps({"graph_id": graph, "node_id": "n1", "config": CALC})})
    stack.redis.xreadgroup(GROUP, name, {stream: ">"}, count=1)  # read by the previous life of `name`, which died
    stack.start_service("ingress", name, WORK_STREAMS=stream, MAX_DELIVERIES="1")
    try:
        event = stack.wait_event(graph, "n1", timeout=60)
    finally:
        stack.procs.pop(name).stop()
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "work item not started: delivered 2 times without being started (limit 1)"
    assert [d["deliveries"] for d in stack.dead_letters() if d["entry_id"] == entry_id] == ["2"]


def backlog(stack: Stack, stream: str, n: int) -> list[str]:
    graphs = [f"g-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    for graph in graphs:
        stack.submit({"graph_id": graph, "node_id": "n1", "config": CALC}, stream=stream)
    return graphs


def test_group_start_dollar_does_not_replay_a_backlog(stack: Stack) -> None:
    stream = f"work-{uuid.uuid4().hex[:8]}"
    old = backlog(stack, stream, 3)
    with own_ingress(stack, stream, INGRESS_GROUP_START="$") as name:
        [new] = backlog(stack, stream, 1)
        assert stack.wait_event(new, "n1", timeout=60)["type"] == "node.completed"
        notes = [line for line in log_lines(stack, name) if "3 existing entries" in line]
    time.sleep(1)
    assert not any(stack.events(g) for g in old)
    assert len(notes) == 1 and stream in notes[0] and "not replayed" in notes[0]


def test_group_start_default_replays_a_backlog_and_says_so(stack: Stack) -> None:
    stream = f"work-{uuid.uuid4().hex[:8]}"
    old = backlog(stack, stream, 2)
    with own_ingress(stack, stream) as name:
        for graph in old:
            assert stack.wait_event(graph, "n1", timeout=60)["type"] == "node.completed"
        warnings = [json.loads(line.split(" ", 1)[1]) for line in log_lines(stack, name) if "existing entries" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    message = warnings[0]["msg"]
    assert stream in message and "2 existing entries will be replayed" in message and "INGRESS_GROUP_START=$" in message
