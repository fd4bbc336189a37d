"""LLM errors classified through the real anthropic client: retryable ones retried with backoff
(each attempt visible in the history), final ones fail the node at once with the provider's text."""

from __future__ import annotations

import time
import uuid

import pytest

from executor.scripted_llm import drop, error, malformed, text
from tests.support.stack import Stack


def model_name() -> str:
    return f"claude-err-{uuid.uuid4().hex[:8]}"


def llm_attempts(stack: Stack, workflow_id: str) -> list[int]:
    history = stack.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id] == "call_llm"
    ]


@pytest.mark.parametrize("status", [401, 403, 404, 413, 422])
def test_client_errors_fail_the_node_at_once_with_the_provider_message(stack: Stack, llm, status: int) -> None:
    model = model_name()
    llm.script(model, error(status, f"provider says no ({status})"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == f"llm {model}: LLM request rejected: {status} provider says no ({status})"
    time.sleep(0.5)
    assert llm.calls(model) == 1
    assert llm_attempts(stack, event["data"]["workflow_id"]) == [1]


def test_server_errors_are_retried_and_each_attempt_is_in_the_history(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, error(500), error(502), error(504), text("third time lucky"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["content"] == "third time lucky"
    assert llm.calls(model) == 4
    assert llm_attempts(stack, event["data"]["workflow_id"]) == [4]  # one activity, its 4th attempt completed


def test_rate_limit_retry_after_is_honoured(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, error(429, "slow down", headers={"retry-after": "3"}), text("ok"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    assert stack.wait_event(graph, node, timeout=60)["type"] == "node.completed"
    first, second = llm.requests(model)
    assert second.at - first.at >= 2.9  # not the policy's 1 s first interval


def test_dropped_connection_is_retried(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, drop(), text("after the drop"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["data"]["output"]["content"] == "after the drop"
    assert llm.calls(model) == 2


def test_malformed_response_is_a_clear_error(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, malformed("<html>gateway</html>"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed"
    assert event["data"]["error"].startswith(f"llm {model}: LLM response unusable")
    assert llm.calls(model) == 1


def test_empty_response_is_a_clear_error(stack: Stack, llm) -> None:
    from executor.scripted_llm import Step

    model = model_name()
    llm.script(model, Step(body={"content": [], "stop_reason": None, "usage": (1, 0)}))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == f"llm {model}: LLM reply has no content (stop_reason None)"
