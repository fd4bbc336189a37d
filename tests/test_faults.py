"""Fault tests on real processes: nothing lost, nothing doubled. Each kills or stops something
(worker, ingress, redis-server, the Temporal server, MCP servers, a fault point) and asserts by
counters and stream contents. Their own stack, with short heartbeats and reclaim times."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from executor.local_services import Proc, start_redis, start_temporal
from doubles.scripted_llm import ScriptedLLM
from tests.conftest import ARTIFACTS
from tests.support.stack import WORK, Stack, run_stack, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("faults")
    with open(ARTIFACTS / "fault-stack.log", "w") as log:
        yield from run_stack(
            tmp, log, llm, temporal_db=True,
            ACTIVITY_HEARTBEAT_TIMEOUT="5", RECLAIM_IDLE_MS="1000", RECLAIM_INTERVAL_MS="200",
            MAX_DELIVERIES="3", TOOL_TIMEOUT="3", TOOL_MAX_ATTEMPTS="5", EXECUTOR_FAULTS_DIR=str(tmp),
        )


def calc(expression: str = "1+2") -> dict:
    return {"tool_name": "calculate", "tool_params": {"expression": expression}}


def submit_many(s: Stack, n: int, config: dict | None = None) -> list[str]:
    graphs = [f"g-{uuid.uuid4().hex[:10]}" for _ in range(n)]
    for g in graphs:
        s.submit_node(config or calc(), graph_id=g)
    return graphs


def assert_exactly_one_each(s: Stack, graphs: list[str], timeout: float = 60) -> None:
    for g in graphs:
        s.wait_event(g, "n1", timeout=timeout)
    time.sleep(1.0)
    counts = {g: len(s.events(g, "n1")) for g in graphs}
    assert set(counts.values()) == {1}, counts
    wait_until(lambda: s.pending() == 0, message="0 pending")


@pytest.mark.interpreters
def test_emit_crash_after_write_does_not_double_the_event(fs: Stack) -> None:
    fs.procs.pop("worker").stop()
    worker = fs.start_service("faulty-worker", "worker", EXECUTOR_FAULTS="emit_result")
    [g] = submit_many(fs, 1)
    wait_until(lambda: not worker.alive(), timeout=30, message="the worker died at the fault point")
    assert len(fs.events(g, "n1")) == 1  # written before the crash
    fs.start_service("worker")  # the emit activity is retried and finds its marker
    assert_exactly_one_each(fs, [g])
    marker = fs.redis.get(f"executor:emitted:{fs.events(g, 'n1')[0]['data']['workflow_id']}")
    assert marker == "dago:events:node.completed"


def test_idle_entries_of_a_dead_consumer_are_reclaimed(fs: Stack) -> None:
    kill_ingress_once_ready(fs)
    graphs = submit_many(fs, 3)
    taken = fs.redis.xreadgroup("executor-workers", "ghost", {WORK: ">"}, count=10)  # then it "dies"
    assert sum(len(e) for _, e in taken) == 3
    fs.start_service("ingress")
    assert_exactly_one_each(fs, graphs)


def kill_ingress_once_ready(fs: Stack) -> None:
    """Kill the ingress after it created the consumer group (so a test can play other consumers)."""
    wait_until(lambda: fs.http_get("ingress", "/ready")[0] == 200, message="ingress ready")
    fs.procs.pop("ingress").kill()


def test_entry_delivered_too_often_is_dead_lettered_with_node_failed(fs: Stack) -> None:
    kill_ingress_once_ready(fs)
    [g] = submit_many(fs, 1)
    [(_, [(entry_id, _)])] = fs.redis.xreadgroup("executor-workers", "ghost", {WORK: ">"}, count=1)
    for n in range(3):  # other consumers claimed it and died each time
        fs.redis.xclaim(WORK, "executor-workers", f"ghost-{n}", 0, [entry_id])
    fs.start_service("ingress")
    event = fs.wait_event(g, "n1", timeout=30)
    assert event["type"] == "node.failed"
    assert event["data"]["error"].startswith("work item not started: delivered 5 times without being started (limit 3)")
    [dead] = [d for d in fs.dead_letters() if d["entry_id"] == entry_id]
    assert dead["deliveries"] == "5" and json.loads(dead["data"])["graph_id"] == g
    assert_exactly_one_each(fs, [g])


def test_entry_delivered_too_often_but_started_is_acked_not_dead_lettered(fs: Stack) -> None:
    """Its workflow exists (only acks got lost): no dead letter, no second event."""
    g = f"g-{uuid.uuid4().hex[:10]}"
    doc = {"id": str(uuid.uuid4()), "graph_id": g, "node_id": "n1", "config": calc()}
    fs.submit(doc)
    fs.wait_event(g, "n1")
    fs.procs.pop("ingress").kill()
    fs.submit(doc)  # the same work item again, then read and abandoned over and over
    [(_, [(entry_id, _)])] = fs.redis.xreadgroup("executor-workers", "ghost", {WORK: ">"}, count=1)
    for n in range(3):
        fs.redis.xclaim(WORK, "executor-workers", f"ghost-{n}", 0, [entry_id])
    fs.start_service("ingress")
    wait_until(lambda: fs.pending() == 0, message="acked")
    assert not [d for d in fs.dead_letters() if d["entry_id"] == entry_id]
    time.sleep(1)
    assert len(fs.events(g, "n1")) == 1


def test_two_ingress_replicas_and_duplicate_deliveries(fs: Stack) -> None:
    fs.start_service("ingress", "ingress-2")
    try:
        graphs = submit_many(fs, 20)
        dup = {"id": str(uuid.uuid4()), "graph_id": f"g-{uuid.uuid4().hex[:8]}", "node_id": "n1", "config": calc()}
        for _ in range(5):
            fs.submit(dup)
        assert_exactly_one_each(fs, [*graphs, dup["graph_id"]])
    finally:
        fs.procs.pop("ingress-2").stop()


def test_redis_stopped_and_restarted_while_work_flows(fs: Stack) -> None:
    before = submit_many(fs, 5)
    fs.procs.pop("redis").stop()  # SIGTERM: the AOF is flushed
    for service in ("worker", "ingress"):  # readiness follows the dependency
        status, body = wait_until(lambda s=service: (r := fs.http_get(s, "/ready"))[0] == 503 and r, message="not ready")
        assert json.loads(body)["checks"]["redis"] != "ok" and json.loads(body)["checks"]["temporal"] == "ok"
    fs.procs["redis"] = start_redis(fs.tmp / "redis", port=fs.redis_port, sink=fs.log)
    after = submit_many(fs, 5)
    assert_exactly_one_each(fs, before + after, timeout=90)
    assert wait_until(lambda: fs.http_get("worker", "/ready")[0] == 200, message="ready again")
    assert fs.procs["worker"].alive() and fs.procs["ingress"].alive()


def test_temporal_down_entries_stay_pending_then_complete(fs: Stack) -> None:
    fs.procs.pop("temporal").kill()
    graphs = submit_many(fs, 5)
    status, body = wait_until(lambda: (r := fs.http_get("ingress", "/ready"))[0] == 503 and r, message="ingress not ready")
    assert json.loads(body)["checks"]["temporal"] != "ok"
    time.sleep(1)
    assert fs.unacked() == 5 and not any(fs.events(g) for g in graphs)  # nothing acked unstarted
    fs.procs["temporal"] = start_temporal(fs.tmp / "temporal", port=fs.temporal_port, sink=fs.log, headless=True)
    assert_exactly_one_each(fs, graphs, timeout=90)
    assert wait_until(lambda: fs.http_get("ingress", "/ready")[0] == 200, message="ready again")


def test_restart_of_everything_under_load(fs: Stack) -> None:
    graphs = submit_many(fs, 30)
    time.sleep(0.3)
    for name in ("ingress", "worker"):
        fs.procs.pop(name).kill()
    fs.procs.pop("redis").stop()
    fs.procs.pop("temporal").kill()
    fs.procs["temporal"] = start_temporal(fs.tmp / "temporal", port=fs.temporal_port, sink=fs.log, headless=True)
    fs.procs["redis"] = start_redis(fs.tmp / "redis", port=fs.redis_port, sink=fs.log)
    fs.start_service("worker")
    fs.start_service("ingress")
    assert_exactly_one_each(fs, graphs, timeout=120)


def test_stdio_mcp_server_killed_is_respawned(fs: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    [g1] = submit_many(fs, 1, {"tool_name": "mcp__stdio__echo", "tool_params": {"text": f"{tag}-1"}})
    fs.wait_event(g1, "n1")
    [first] = [c for c in fs.mcp_calls("echo") if c["text"] == f"{tag}-1"]
    os.kill(first["pid"], signal.SIGKILL)
    [g2] = submit_many(fs, 1, {"tool_name": "mcp__stdio__echo", "tool_params": {"text": f"{tag}-2"}})
    event = fs.wait_event(g2, "n1", timeout=30)
    assert event["type"] == "node.completed" and event["data"]["output"] == {"result": f"stdio: {tag}-2"}
    [second] = [c for c in fs.mcp_calls("echo") if c["text"] == f"{tag}-2"]
    assert second["pid"] != first["pid"]


def test_http_mcp_server_down_then_back_completes(fs: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    fs.procs.pop("mcp-http").kill()
    [g] = submit_many(fs, 1, {"tool_name": "mcp__http__echo", "tool_params": {"text": tag}})
    time.sleep(1.5)  # a failed attempt or two while it is down
    assert not fs.events(g)
    fs.procs["mcp-http"] = Proc("mcp-http", [*fs.mcp_http_argv()], env=fs.env(), sink=fs.log)
    event = fs.wait_event(g, "n1", timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"] == {"result": f"http: {tag}"}


def test_hanging_tool_times_out_and_fails_after_its_attempts(fs: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    [g] = submit_many(fs, 1, {"tool_name": "mcp__http__slow", "tool_params": {"seconds": 30, "tag": tag}})
    event = fs.wait_event(g, "n1", timeout=60)
    assert event["type"] == "node.failed"
    assert "timed out" in event["data"]["error"]
    assert len([c for c in fs.mcp_calls("slow_started") if c["tag"] == tag]) == 5  # TOOL_MAX_ATTEMPTS


@pytest.mark.interpreters
def test_node_deadline_fails_the_node_and_cancels_the_call(fs: Stack) -> None:
    gate = fs.gate(f"gate-{uuid.uuid4().hex[:6]}")
    [g] = submit_many(fs, 1, {"tool_name": "mcp__http__gate", "tool_params": {"name": gate.name}, "timeout": 2})
    event = fs.wait_event(g, "n1", timeout=30)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "node deadline of 2s exceeded during tool mcp__http__gate"
    history = fs.temporal(lambda c: c.get_workflow_handle(event["data"]["workflow_id"]).fetch_history())
    assert any(e.HasField("activity_task_cancel_requested_event_attributes") for e in history.events)  # the call was cancelled
    gate.unlink()


@pytest.mark.interpreters
def test_cancellation_from_temporal_emits_node_failed(fs: Stack) -> None:
    gate = fs.gate(f"gate-{uuid.uuid4().hex[:6]}")
    graph, node, wid = fs.submit_agent({"tool_name": "mcp__http__gate", "tool_params": {"name": gate.name}})
    wait_until(lambda: [c for c in fs.mcp_calls("gate_started") if c["name"] == gate.name], message="call in flight")
    fs.temporal(lambda c: c.get_workflow_handle(wid).cancel())
    event = fs.wait_event(graph, node, timeout=30)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "cancelled by request (Temporal UI or CLI) during tool mcp__http__gate"
    gate.unlink()

    async def status(client) -> str:
        return (await client.get_workflow_handle(wid).describe()).status.name

    assert wait_until(lambda: fs.temporal(status) == "CANCELED", message="workflow cancelled")


@pytest.mark.interpreters
def test_sigterm_drains_the_call_in_flight(fs: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    [g] = submit_many(fs, 1, {"tool_name": "mcp__http__slow", "tool_params": {"seconds": 2, "tag": tag}})
    wait_until(lambda: [c for c in fs.mcp_calls("slow_started") if c["tag"] == tag], message="call in flight")
    worker = fs.procs.pop("worker")
    assert worker.stop(timeout=40) == 0  # SIGTERM: waits for the call, then exits cleanly
    assert [c for c in fs.mcp_calls("slow") if c["tag"] == tag]  # the call finished before exit
    fs.start_service("worker")
    event = fs.wait_event(g, "n1", timeout=30)
    assert event["type"] == "node.completed"
    assert len([c for c in fs.mcp_calls("slow_started") if c["tag"] == tag]) == 1  # not run again


@pytest.mark.interpreters
def test_cancellation_during_an_emit_outage_still_emits_once(fs: Stack) -> None:
    gate = fs.gate(f"gate-{uuid.uuid4().hex[:6]}")
    graph, node, wid = fs.submit_agent({"tool_name": "mcp__http__gate", "tool_params": {"name": gate.name}})
    wait_until(lambda: [c for c in fs.mcp_calls("gate_started") if c["name"] == gate.name], message="call in flight")
    fs.procs.pop("redis").stop()
    gate.unlink()  # the tool finishes; emit now fails while Redis is down

    async def emit_attempts(client) -> int:
        pending = (await client.get_workflow_handle(wid).describe()).raw_description.pending_activities
        return max((p.attempt for p in pending if p.activity_type.name == "emit_result"), default=0)

    wait_until(lambda: fs.temporal(emit_attempts) >= 2, timeout=30, message="emit retrying")
    fs.temporal(lambda c: c.get_workflow_handle(wid).cancel())
    time.sleep(1)
    fs.procs["redis"] = start_redis(fs.tmp / "redis", port=fs.redis_port, sink=fs.log)
    event = fs.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"] == {"result": f"gate {gate.name} passed"}
    time.sleep(1)
    assert len(fs.events(graph, node)) == 1

    async def status(client) -> str:
        return (await client.get_workflow_handle(wid).describe()).status.name

    assert wait_until(lambda: fs.temporal(status) == "COMPLETED", message="completed despite the late cancel")


def test_one_slow_tool_call_does_not_fail_the_others_on_its_server(fs: Stack) -> None:
    """A call that times out leaves the session alone: a concurrent call on it completes.

    The gate call must start after the slow one and finish after the slow one's timeout, yet before
    its own: a worker with a 12 s tool timeout and a gate started 6 s after the slow call leave
    seconds of margin on either side, not the fraction of one a busy machine eats."""
    fs.procs.pop("worker").stop()
    fs.start_service("worker", TOOL_TIMEOUT="12")
    try:
        hang, quick = uuid.uuid4().hex[:6], fs.gate(f"gate-{uuid.uuid4().hex[:6]}")
        [g_slow] = submit_many(fs, 1, {"tool_name": "mcp__http__slow", "tool_params": {"seconds": 60, "tag": hang}})
        wait_until(lambda: [c for c in fs.mcp_calls("slow_started") if c["tag"] == hang], timeout=30, message="slow call in flight")
        time.sleep(6)
        [g_gate] = submit_many(fs, 1, {"tool_name": "mcp__http__gate", "tool_params": {"name": quick.name}})
        wait_until(lambda: [c for c in fs.mcp_calls("gate_started") if c["name"] == quick.name], message="both in flight")
        # the slow call's first attempt times out (TOOL_TIMEOUT 12 s) and is retried...
        wait_until(lambda: len([c for c in fs.mcp_calls("slow_started") if c["tag"] == hang]) >= 2, timeout=30, message="slow call retried")
        quick.unlink()  # ...while the gate call, younger than its own timeout, goes on and finishes
        event = fs.wait_event(g_gate, "n1", timeout=30)
        assert event["type"] == "node.completed"
        assert len([c for c in fs.mcp_calls("gate_started") if c["name"] == quick.name]) == 1  # not failed by the other's timeout
    finally:
        fs.procs.pop("worker").kill()
        fs.start_service("worker")
    # the slow call's attempts run out on the usual worker (3 s timeout): the node reports once
    assert fs.wait_event(g_slow, "n1", timeout=120)["type"] == "node.failed"
