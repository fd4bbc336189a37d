"""No silent hang, on real processes: a NodeWorkflow that stops for good without emitting (an
operator terminated it, its workflow task keeps failing) gets exactly one `node.failed` naming the
cause from the ingress's watchdog, and `executor rerun` runs it again. Their own stack: watchdog
passes every second, `STUCK_AFTER` of a few seconds, every payload stored in Redis (CLAIM_CHECK_BYTES,
the released name of PAYLOAD_STORAGE_THRESHOLD)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from doubles.scripted_llm import ScriptedLLM, text, tool_use
from tests.conftest import ARTIFACTS
from tests.support.history import start_attributes, upserts
from tests.support.stack import ROOT, Stack, run_stack, wait_until

pytestmark = pytest.mark.slow

STUCK_AFTER = 4  # seconds
REPORT_WITHIN = 30  # seconds: a closed run is reported within a pass or two (interval 1 s) plus visibility lag


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("watchdog")
    with open(ARTIFACTS / "watchdog-stack.log", "w") as log:
        yield from run_stack(
            tmp, log, llm,
            WATCHDOG_INTERVAL="1", STUCK_AFTER=str(STUCK_AFTER), CLAIM_CHECK_BYTES="100",
            ACTIVITY_HEARTBEAT_TIMEOUT="5", EXECUTOR_FAULTS_DIR=str(tmp),
        )


def cli(s: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", *args], env=s.env(), cwd=ROOT, capture_output=True, text=True, timeout=60)


def status(s: Stack, workflow_id: str) -> str:
    async def run(client) -> str:
        return (await client.get_workflow_handle(workflow_id).describe()).status.name

    return s.temporal(run)


def terminate(s: Stack, workflow_id: str, reason: str) -> None:
    s.temporal(lambda c: c.get_workflow_handle(workflow_id).terminate(reason=reason))


def gate_node(s: Stack) -> tuple[str, str, str, object]:
    """A tool node held by the test MCP server's gate: running until the gate file goes."""
    gate = s.gate(f"gate-{uuid.uuid4().hex[:6]}")
    graph, node, wid = s.submit_agent({"tool_name": "mcp__http__gate", "tool_params": {"name": gate.name}})
    wait_until(lambda: [c for c in s.mcp_calls("gate_started") if c["name"] == gate.name], timeout=90, message="gate call in flight")
    return graph, node, wid, gate


def test_terminated_agent_node_reports_node_failed_once_then_rerun_completes_it(ws: Stack, llm: ScriptedLLM) -> None:
    ws.start_service("ingress", "ingress-2")  # a second replica's watchdog sees the same run
    try:
        model = f"claude-watchdog-{uuid.uuid4().hex[:6]}"
        gate = ws.gate(f"gate-{uuid.uuid4().hex[:6]}")
        llm.script(model, tool_use(("mcp__http__gate", {"name": gate.name})))
        graph, node, wid = ws.submit_agent({"llm_config": {"model": model}, "tools": ["mcp__http__gate"]})
        wait_until(lambda: [c for c in ws.mcp_calls("gate_started") if c["name"] == gate.name], message="agent waiting on its tool")

        running = cli(ws, "rerun", wid)
        assert running.returncode == 1
        assert running.stdout.splitlines() == [f"refused: {wid} is running; cancel it or let it end first"]

        terminated_at = time.monotonic()
        terminate(ws, wid, "tool server under maintenance")
        event = ws.wait_event(graph, node, timeout=REPORT_WITHIN)
        assert time.monotonic() - terminated_at < REPORT_WITHIN
        assert event["type"] == "node.failed"
        error = event["data"]["error"]
        assert error.startswith("workflow terminated by ") and error.endswith(": tool server under maintenance"), error
        assert event["data"]["workflow_id"] == wid and event["data"]["reported_by"] == "watchdog"
        assert event["data"]["mode"] == "agent"
        time.sleep(3)  # three more passes of both watchdogs
        assert len(ws.events(graph, node)) == 1

        gate.unlink()
        llm.script(model, tool_use(("mcp__http__gate", {"name": gate.name})), text("done on the second run"))
        rerun = cli(ws, "rerun", wid)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        lines = rerun.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"re-running {wid}: run ") and "TERMINATED" in lines[0], lines
        assert "emitted marker cleared (it named dago:events:node.failed)" in lines[0]

        completed = wait_until(lambda: [e for e in ws.events(graph, node) if e["type"] == "node.completed"], timeout=60, message="node.completed of the re-run")
        assert completed[0]["data"]["output"]["result"] == "done on the second run"
        assert completed[0]["data"]["run_id"] != event["data"]["run_id"]
        time.sleep(2)
        assert [e["type"] for e in ws.events(graph, node)] == ["node.completed", "node.failed"]  # one each (streams in that order)
        assert status(ws, wid) == "COMPLETED"
        # the re-run started with the search attributes the ingress would set (not the old outcome) and upserted only its own outcome
        history = ws.temporal(lambda c: c.get_workflow_handle(wid).fetch_history())
        started = start_attributes(history)
        assert {"DagoGraphId", "DagoNodeId", "DagoMode", "DagoModel"} <= set(started) and "DagoOutcome" not in started
        assert upserts(history) == [["DagoOutcome"]]
    finally:
        ws.procs.pop("ingress-2").stop()


def test_rerun_refuses_unknown_and_completed_nodes_unless_forced(ws: Stack) -> None:
    unknown = cli(ws, "rerun", "node:nope:n1:missing")
    assert unknown.returncode == 1 and unknown.stdout.splitlines() == ["error: no workflow node:nope:n1:missing"]

    graph, node, wid = ws.submit_agent({"tool_name": "calculate", "tool_params": {"expression": "6*7"}})
    first = ws.wait_event(graph, node)
    assert first["type"] == "node.completed" and first["data"]["output"] == 42
    wait_until(lambda: status(ws, wid) == "COMPLETED", message="workflow completed")

    refused = cli(ws, "rerun", wid)
    assert refused.returncode == 1
    assert refused.stdout.splitlines() == [f"refused: {wid} completed and emitted its result; --force runs it again (a second result event)"]

    forced = cli(ws, "rerun", wid, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "COMPLETED" in forced.stdout and "emitted marker cleared (it named dago:events:node.completed)" in forced.stdout
    wait_until(lambda: len(ws.events(graph, node)) == 2, timeout=60, message="the forced re-run's event")
    second = ws.events(graph, node)[1]
    assert second["type"] == "node.completed" and second["data"]["output"] == 42 and second["data"]["run_id"] != first["data"]["run_id"]


def stored_input_key(s: Stack, workflow_id: str) -> str:
    """The Redis key holding the workflow's stored input (its history holds only the SDK's reference)."""
    history = s.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert payload.metadata["messageType"] == b"temporal.api.sdk.v1.ExternalStorageReference"
    return json.loads(payload.data)["claimData"]["key"]


def test_workflow_task_failing_for_good_is_reported_and_terminated(ws: Stack) -> None:
    graph, node, wid, gate = gate_node(ws)
    key = stored_input_key(ws, wid)
    assert ws.redis.delete(key) == 1  # the input is gone from Redis: a replay cannot decode it
    ws.restart("worker")  # SIGKILL: the new worker has no cached copy and must replay the history
    gate.unlink()  # the retried tool call passes; its result asks for a workflow task, which fails

    event = ws.wait_event(graph, node, timeout=120)
    assert event["type"] == "node.failed"
    error = event["data"]["error"]
    assert error.startswith("workflow task failing for "), error
    assert error.endswith(f"terminated by the watchdog: stored payload {key} is missing from Redis (expired or deleted)"), error
    assert event["data"]["reported_by"] == "watchdog" and event["data"]["workflow_id"] == wid

    async def termination(client) -> tuple[datetime, str]:
        history = await client.get_workflow_handle(wid).fetch_history()
        failed = next(e for e in history.events if e.HasField("workflow_task_failed_event_attributes"))
        closing = history.events[-1].workflow_execution_terminated_event_attributes
        return failed.event_time.ToDatetime(tzinfo=UTC), closing.reason

    first_failure, reason = ws.temporal(termination)
    assert reason.startswith("watchdog: workflow task failing for ") and key in reason
    reported = datetime.fromisoformat(event["timestamp"])
    assert (reported - first_failure).total_seconds() >= STUCK_AFTER  # not before it had failed that long
    assert status(ws, wid) == "TERMINATED"
    time.sleep(3)
    assert len(ws.events(graph, node)) == 1

    unreadable = cli(ws, "rerun", wid)  # the input is gone: rerun says so instead of guessing
    assert unreadable.returncode == 1
    assert unreadable.stdout.splitlines() == [f"error: cannot read the input of {wid}: stored payload {key} is missing from Redis (expired or deleted)"]


def test_no_second_event_when_the_workflow_already_emitted(ws: Stack) -> None:
    """The worker dies right after its emit wrote the event; an operator then terminates the run.
    The watchdog finds the marker and writes nothing."""
    ws.procs.pop("worker").stop()
    faulty = ws.start_service("faulty-worker", "worker-faulty", EXECUTOR_FAULTS="emit_result")
    graph, node, wid = ws.submit_agent({"tool_name": "calculate", "tool_params": {"expression": "2+2"}})
    wait_until(lambda: not faulty.alive(), timeout=60, message="the worker died after writing the event")
    ws.procs.pop("worker-faulty")
    assert [e["type"] for e in ws.events(graph, node)] == ["node.completed"]
    assert status(ws, wid) == "RUNNING"  # the emit step never finished
    terminate(ws, wid, "cleaning up after a crash")

    async def visible_as_terminated(client) -> int:
        return (await client.count_workflows(f"WorkflowId = '{wid}' AND ExecutionStatus = 'Terminated'")).count

    wait_until(lambda: ws.temporal(visible_as_terminated) == 1, message="terminated run visible")
    ws.start_service("worker")
    # A second terminated run, closed after the first was visible: once the watchdog has reported
    # it, it has listed the first one too.
    g2, n2, w2, gate = gate_node(ws)
    terminate(ws, w2, "second")
    assert ws.wait_event(g2, n2, timeout=REPORT_WITHIN)["data"]["error"].endswith(": second")
    gate.unlink()
    events = ws.events(graph, node)
    assert [e["type"] for e in events] == ["node.completed"] and events[0]["data"]["output"] == 4
