"""LOCAL_STEPS (set on the ingress): resolve and emit as local activities, LLM and tool calls still
regular activities; the node behaves the same and its history is two activities shorter."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from doubles.scripted_llm import text, tool_use
from tests.support.stack import Stack

STREAM = "local.work"


@pytest.fixture(scope="module")
def local_ingress(stack: Stack) -> Iterator[str]:
    stack.start_service("ingress", "ingress-local", WORK_STREAMS=STREAM, LOCAL_STEPS="true")
    yield STREAM
    stack.procs.pop("ingress-local").stop()


def kinds(stack: Stack, workflow_id: str) -> tuple[list[str], int]:
    """(activity types scheduled as regular activities, local activity markers)."""
    history = stack.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    return scheduled, len(markers)


def test_tool_node_with_local_steps(stack: Stack, local_ingress: str) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "6*7"}}}, stream=local_ingress)
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.completed" and event["data"]["output"] == 42
    scheduled, markers = kinds(stack, event["data"]["workflow_id"])
    assert scheduled == ["call_tool"] and markers == 2  # resolve and emit ran locally
    time.sleep(0.5)
    assert len(stack.events(graph, "n1")) == 1


def test_agent_node_with_local_steps(stack: Stack, llm, local_ingress: str) -> None:
    model = f"claude-local-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "2+2"})), text("4"))
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"llm_config": {"model": model}, "tools": ["calculate"]}}, stream=local_ingress)
    event = stack.wait_event(graph, "n1")
    assert event["data"]["output"]["result"] == "4"
    scheduled, markers = kinds(stack, event["data"]["workflow_id"])
    assert scheduled == ["describe_tools", "call_llm", "call_tool", "call_llm"] and markers == 2


def test_config_error_with_local_steps_fails_once(stack: Stack, local_ingress: str) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"llm_config": {"prompt": "{{nothing}}"}}}, stream=local_ingress)
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.failed" and event["data"]["error"] == "unknown template variable: nothing"
