"""LOCAL_STEPS (set on the ingress, on by default): the steps that only read (resolve, and an
agent's describe_tools) as local activities; LLM calls, tool calls and the emit stay regular
activities (core/step_io.py NodeInput says why the emit does). The node behaves the same and its
history is shorter. `LOCAL_STEPS=false` gives the regular steps of the releases before."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from doubles.scripted_llm import text, tool_use
from tests.support.stack import WORK, Stack

STREAM = "regular.work"


@pytest.fixture(scope="module")
def regular_ingress(stack: Stack) -> Iterator[str]:
    stack.start_service("ingress", "ingress-regular", WORK_STREAMS=STREAM, LOCAL_STEPS="false")
    yield STREAM
    stack.procs.pop("ingress-regular").stop()


def kinds(stack: Stack, workflow_id: str) -> tuple[list[str], int]:
    """(activity types scheduled as regular activities, local activity markers)."""
    history = stack.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    return scheduled, len(markers)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [(WORK, (["call_tool", "emit_result"], 1)), (STREAM, (["resolve_node", "call_tool", "emit_result"], 0))],
    ids=["as-shipped", "LOCAL_STEPS=false"],
)
def test_tool_node_steps(stack: Stack, regular_ingress: str, stream: str, expected: tuple) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "6*7"}}}, stream=stream)
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.completed" and event["data"]["output"] == 42
    assert kinds(stack, event["data"]["workflow_id"]) == expected
    time.sleep(0.5)
    assert len(stack.events(graph, "n1")) == 1


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (WORK, (["call_llm", "call_tool", "call_llm", "emit_result"], 2)),
        (STREAM, (["resolve_node", "describe_tools", "call_llm", "call_tool", "call_llm", "emit_result"], 0)),
    ],
    ids=["as-shipped", "LOCAL_STEPS=false"],
)
def test_agent_node_steps(stack: Stack, llm, regular_ingress: str, stream: str, expected: tuple) -> None:
    model = f"claude-local-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "2+2"})), text("4"))
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"llm_config": {"model": model}, "tools": ["calculate"]}}, stream=stream)
    event = stack.wait_event(graph, "n1")
    assert event["data"]["output"]["result"] == "4"
    assert kinds(stack, event["data"]["workflow_id"]) == expected


@pytest.mark.parametrize("stream", [WORK, STREAM], ids=["as-shipped", "LOCAL_STEPS=false"])
def test_config_error_fails_once(stack: Stack, regular_ingress: str, stream: str) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"llm_config": {"prompt": "{{nothing}}"}}}, stream=stream)
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.failed" and event["data"]["error"] == "unknown template variable: nothing"
    time.sleep(0.5)
    assert len(stack.events(graph, "n1")) == 1
