"""Crash tests: SIGKILL a real process mid-flight, restart it, and prove by the counters of the
scripted LLM and of the MCP tools that finished steps did not run again and exactly one result
event was emitted. Their own stack: Temporal persists to SQLite, heartbeats are short."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.local_services import start_temporal
from doubles.scripted_llm import ScriptedLLM, text, tool_use
from tests.conftest import ARTIFACTS
from tests.support.stack import WORK, Stack, run_stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.interpreters]


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "crash-stack.log", "w") as log:
        yield from run_stack(tmp_path_factory.mktemp("crash"), log, llm, temporal_db=True, ACTIVITY_HEARTBEAT_TIMEOUT="5")


def agent(model: str, tools: list[str]) -> dict:
    return {"llm_config": {"model": model}, "tools": tools, "task": "go", "max_iterations": 10}


def by_iteration(llm: ScriptedLLM, model: str) -> dict[int, int]:
    """How many requests the scripted LLM received per iteration (told apart by transcript length)."""
    counts: dict[int, int] = {}
    for request in llm.requests(model):
        iteration = (len(request.body["messages"]) + 1) // 2
        counts[iteration] = counts.get(iteration, 0) + 1
    return counts


def test_worker_killed_during_llm_call_resumes_without_repeating_finished_calls(crash_stack: Stack, llm: ScriptedLLM) -> None:
    s = crash_stack
    model = f"claude-crash-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:8]
    llm.script(
        model,
        tool_use(("echo", {"text": tag})),
        text("never delivered", hold=30),  # iteration 2 hangs: the worker dies meanwhile
        text("finished after the crash"),
    )
    graph, node, _ = s.submit_agent(agent(model, ["echo"]))
    wait_until(lambda: llm.calls(model) == 2, timeout=30, message="iteration 2 in flight")
    s.restart("worker")  # SIGKILL, then a new worker process
    event = s.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "finished after the crash"
    assert by_iteration(llm, model) == {1: 1, 2: 2}  # iteration 1 once; only the unfinished call again
    assert len([c for c in s.mcp_calls("echo") if c["text"] == tag]) == 1
    time.sleep(1)
    assert len(s.events(graph, node)) == 1


def test_a_token_budget_counts_the_calls_before_a_worker_crash(crash_stack: Stack, llm: ScriptedLLM) -> None:
    """The budget's count is the loop's usage, rebuilt by the replay on the new worker: the call
    finished before the crash counts, the one cut by it does not (it never answered)."""
    s = crash_stack
    model = f"claude-budget-{uuid.uuid4().hex[:6]}"
    turn = [tool_use(("calculate", {"expression": f"{n}+1"}), usage=(100, 20)) for n in range(3)]
    llm.script(model, turn[0], text("never delivered", hold=30), turn[1], turn[2], text("over budget: never asked"))
    graph, node, _ = s.submit_agent({**agent(model, ["calculate"]), "max_total_tokens": 300})
    wait_until(lambda: llm.calls(model) == 2, timeout=30, message="iteration 2 in flight")
    s.restart("worker")
    event = s.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "budget of 300 tokens exceeded after 3 iterations (360 tokens used)"
    assert by_iteration(llm, model) == {1: 1, 2: 2, 3: 1}


def gated_loop(s: Stack, llm: ScriptedLLM, answer: str) -> tuple[str, str, str, str, Path]:
    """An agent whose iteration 1 calls `echo` (finishes) and iteration 2 a `gate` call that is
    held in flight until the test removes the gate file; returns once that call is running."""
    model = f"claude-crash-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:8]
    gate = s.gate(f"gate-{tag}")
    llm.script(model, tool_use(("echo", {"text": tag})), tool_use(("mcp__http__gate", {"name": gate.name})), text(answer))
    graph, node, _ = s.submit_agent(agent(model, ["echo", "mcp__http__gate"]))
    wait_until(lambda: [c for c in s.mcp_calls("gate_started") if c["name"] == gate.name], timeout=30, message="tool call in flight")
    return graph, node, model, tag, gate


def test_worker_killed_during_tool_call_resumes_without_repeating_finished_calls(crash_stack: Stack, llm: ScriptedLLM) -> None:
    s = crash_stack
    graph, node, model, tag, gate = gated_loop(s, llm, "done")
    s.procs["worker"].kill()
    gate.unlink()  # the server side of the orphaned call may finish; the workflow never saw it
    s.start_service("worker")
    event = s.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "done"
    assert len([c for c in s.mcp_calls("gate_started") if c["name"] == gate.name]) == 2  # retried once
    assert len([c for c in s.mcp_calls("echo") if c["text"] == tag]) == 1  # the finished call: once
    assert by_iteration(llm, model) == {1: 1, 2: 1, 3: 1}
    time.sleep(1)
    assert len(s.events(graph, node)) == 1


def test_temporal_server_restart_mid_loop(crash_stack: Stack, llm: ScriptedLLM) -> None:
    s = crash_stack
    graph, node, model, tag, gate = gated_loop(s, llm, "survived")
    s.procs.pop("temporal").kill()
    time.sleep(1)
    s.procs["temporal"] = start_temporal(s.tmp / "temporal", port=s.temporal_port, ui_port=s.temporal_port + 1, sink=s.log, headless=True)
    gate.unlink()
    event = s.wait_event(graph, node, timeout=90)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "survived"
    assert len([c for c in s.mcp_calls("echo") if c["text"] == tag]) == 1
    assert by_iteration(llm, model)[1] == 1
    time.sleep(1)
    assert len(s.events(graph, node)) == 1


def test_ingress_restart_rereads_its_pending_entries(crash_stack: Stack) -> None:
    s = crash_stack
    # Run alone, this test may get here before the ingress made its consumer group at start.
    wait_until(lambda: s.redis.exists(WORK) and s.redis.xinfo_groups(WORK), message="the ingress's consumer group")
    s.procs.pop("ingress").kill()
    graphs = [f"g-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for g in graphs:
        s.submit({"graph_id": g, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "1+2"}}})
    # As if the dead ingress had read them and died before XACK: they sit in its pending list.
    read = s.redis.xreadgroup("executor-workers", "ingress", {WORK: ">"}, count=10)
    assert sum(len(entries) for _, entries in read) == 3
    assert s.pending() == 3
    s.start_service("ingress")
    for g in graphs:
        assert s.wait_event(g, "n1", timeout=30)["data"]["output"] == 3
    wait_until(lambda: s.pending() == 0, message="pending entries acked")
    time.sleep(1)
    assert all(len(s.events(g, "n1")) == 1 for g in graphs)
    dead = [json.loads(d.get("data", "{}")).get("graph_id") for d in s.dead_letters()]
    assert not set(graphs) & set(dead)
