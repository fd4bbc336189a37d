"""LLM errors classified through the real anthropic client: retryable ones retried with backoff
(each attempt visible in the history), final ones fail the node at once with the provider's text."""

from __future__ import annotations

import time
import uuid

import pytest

from doubles.scripted_llm import drop, error, malformed, text
from tests.support.stack import Stack, wait_until


def model_name() -> str:
    return f"claude-err-{uuid.uuid4().hex[:8]}"


# The same errors through the real `openai` client, on the scripted server's Chat Completions path.
PROVIDERS = ["anthropic", "openai"]


def llm_config(model: str, provider: str) -> dict:
    config = {"model": model, "prompt": "hi"}
    return config if provider == "anthropic" else {**config, "provider": provider}


def shown(model: str, provider: str) -> str:
    """The model as the node's error names it: qualified when the node named its provider."""
    return model if provider == "anthropic" else f"{provider}:{model}"


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


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [401, 403, 404, 413, 422])
def test_client_errors_fail_the_node_at_once_with_the_provider_message(stack: Stack, llm, status: int, provider: str) -> None:
    model = model_name()
    llm.script(model, error(status, f"provider says no ({status})"))
    graph, node = stack.submit_node({"llm_config": llm_config(model, provider)})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == f"llm {shown(model, provider)}: LLM request rejected: {status} provider says no ({status})"
    time.sleep(0.5)
    assert llm.calls(model) == 1
    assert llm_attempts(stack, event["data"]["workflow_id"]) == [1]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_errors_are_retried_and_each_attempt_is_in_the_history(stack: Stack, llm, provider: str) -> None:
    model = model_name()
    llm.script(model, error(500), error(502), error(504), text("third time lucky"))
    graph, node = stack.submit_node({"llm_config": llm_config(model, provider)})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["content"] == "third time lucky"
    assert [r.api for r in llm.requests(model)] == [provider] * 4
    assert llm_attempts(stack, event["data"]["workflow_id"]) == [4]  # one activity, its 4th attempt completed


def test_rate_limit_retry_after_is_honoured(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, error(429, "slow down", headers={"retry-after": "3"}), text("ok"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    assert stack.wait_event(graph, node, timeout=60)["type"] == "node.completed"
    first, second = llm.requests(model)
    assert second.at - first.at >= 2.9  # not the policy's 1 s first interval


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dropped_connection_is_retried(stack: Stack, llm, provider: str) -> None:
    model = model_name()
    llm.script(model, drop(), text("after the drop"))
    graph, node = stack.submit_node({"llm_config": llm_config(model, provider)})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["data"]["output"]["content"] == "after the drop"
    assert [r.api for r in llm.requests(model)] == [provider, provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_response_is_a_clear_error(stack: Stack, llm, provider: str) -> None:
    model = model_name()
    llm.script(model, malformed("<html>gateway</html>"))
    graph, node = stack.submit_node({"llm_config": llm_config(model, provider)})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed"
    assert event["data"]["error"].startswith(f"llm {shown(model, provider)}: LLM response unusable")
    assert llm.calls(model) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_empty_response_is_a_clear_error(stack: Stack, llm, provider: str) -> None:
    from doubles.scripted_llm import Step

    model = model_name()
    llm.script(model, Step(body={"content": [], "stop_reason": None, "usage": (1, 0)}))
    graph, node = stack.submit_node({"llm_config": llm_config(model, provider)})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == f"llm {shown(model, provider)}: LLM reply has no content (stop_reason None)"


# -- a worker without an API key ----------------------------------------------------------------

NO_KEY = {"LLM_API_KEY": "", "ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": ""}
KEY_WARNING = "LLM_API_KEY is not set: llm and agent nodes will fail"


def _worker_pair(stack: Stack, tmp_path_factory, name: str, **env: str):
    """A worker (its log in a file of its own) and an ingress on their own task queue and stream,
    so work meant for them never reaches the shared worker, and theirs never leaks out."""
    import sys

    from executor.local_services import Proc
    from tests.support.stack import ROOT

    queue_env = {"TEMPORAL_TASK_QUEUE": f"{name}-{uuid.uuid4().hex[:6]}", "WORK_STREAMS": f"{name}.work"}
    log_path = tmp_path_factory.mktemp(name) / "worker.log"
    sink = open(log_path, "w")
    worker = Proc(
        f"worker-{name}",
        [sys.executable, "-m", "executor", "worker"],
        env=stack.env(WORKER_ID=f"worker-{name}", HEALTH_PORT="0", METRICS_PORT="0", **queue_env, **env),
        sink=sink,
        cwd=str(ROOT),
    )
    stack.procs[worker.name] = worker  # stopped with the stack should the module's teardown not run
    stack.start_service("ingress", f"ingress-{name}", **queue_env, **env)
    return worker, sink, log_path, queue_env["WORK_STREAMS"]


def _log_messages(path) -> list[str]:
    import json

    messages = []
    for raw in path.read_text(errors="replace").splitlines():
        _, _, rest = raw.partition("] ")
        try:
            messages.append(json.loads(rest)["msg"])
        except (json.JSONDecodeError, KeyError, TypeError):
            messages.append(rest)
    return messages


@pytest.fixture(scope="module")
def keyless(stack: Stack, tmp_path_factory):
    worker, sink, log_path, stream = _worker_pair(stack, tmp_path_factory, "keyless", **NO_KEY)
    yield stream, log_path
    stack.procs.pop(worker.name).stop()
    sink.close()
    stack.procs.pop("ingress-keyless").stop()


@pytest.fixture(scope="module")
def sdk_key(stack: Stack, tmp_path_factory):
    key = "sk-sdk-" + uuid.uuid4().hex
    worker, sink, log_path, stream = _worker_pair(stack, tmp_path_factory, "sdkkey", **{**NO_KEY, "ANTHROPIC_API_KEY": key})
    yield stream, log_path, key
    stack.procs.pop(worker.name).stop()
    sink.close()
    stack.procs.pop("ingress-sdkkey").stop()


def _submit(stack: Stack, stream: str, config: dict) -> str:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": config}, stream=stream)
    return graph


def test_worker_without_a_key_warns_once_at_start(stack: Stack, keyless) -> None:
    _, log_path = keyless
    wait_until(lambda: any(" polling " in m for m in _log_messages(log_path)), timeout=60, message="the keyless worker polling")
    warnings = [m for m in _log_messages(log_path) if m.startswith(KEY_WARNING)]
    assert len(warnings) == 1, _log_messages(log_path)


def test_llm_and_agent_nodes_without_a_key_fail_naming_the_missing_key(stack: Stack, llm, keyless) -> None:
    stream, _ = keyless
    model = model_name()
    llm.script(model, text("answered without a key"), text("answered without a key"))
    llm_graph = _submit(stack, stream, {"llm_config": {"model": model, "prompt": "hi"}})
    agent_graph = _submit(stack, stream, {"llm_config": {"model": model}, "tools": ["calculate"]})
    reason = "LLM request not sent: LLM_API_KEY is not set on this worker (nor ANTHROPIC_API_KEY)"
    event = stack.wait_event(llm_graph, "n1", timeout=60)
    assert event["type"] == "node.failed" and event["data"]["error"] == f"llm {model}: {reason}", event
    event = stack.wait_event(agent_graph, "n1", timeout=60)
    assert event["type"] == "node.failed" and event["data"]["error"] == f"agent: {reason}", event
    assert llm.calls(model) == 0  # nothing was sent to the provider
    assert llm_attempts(stack, event["data"]["workflow_id"]) == [1]  # final at once, not retried


def test_anthropic_api_key_is_honoured_when_llm_api_key_is_unset(stack: Stack, llm, sdk_key) -> None:
    stream, log_path, key = sdk_key
    model = model_name()
    llm.script(model, text("hello with the SDK's key"))
    graph = _submit(stack, stream, {"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, "n1", timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["content"] == "hello with the SDK's key", event
    [request] = llm.requests(model)
    assert request.headers.get("authorization") == f"Bearer {key}" or request.headers.get("x-api-key") == key
    assert not [m for m in _log_messages(log_path) if m.startswith(KEY_WARNING)]


def test_the_sdk_key_is_a_secret_and_llm_api_key_wins() -> None:
    from adapters.settings import Settings

    both = Settings.from_env({"LLM_API_KEY": "llm-key-1", "ANTHROPIC_API_KEY": "sdk-key-2"})
    assert both.llm_key() == "llm-key-1"
    assert {"llm-key-1", "sdk-key-2"} <= set(both.secret_values())  # masked in every log line
    assert Settings.from_env({"ANTHROPIC_API_KEY": "sdk-key-2"}).llm_key() == "sdk-key-2"
    assert Settings.from_env({}).llm_key() == ""
