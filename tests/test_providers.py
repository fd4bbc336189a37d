"""Every provider end to end on the real stack: the shared worker serves anthropic (its default),
openai, bedrock and vertex at once (tests/support/providers.py), all pointed at the scripted
server, each through its real SDK client; a node picks one with `llm_config.provider`.

OpenAI gets the full set (llm node, agent tool round trip, parallel calls, a tool error, 429 with
retry-after, a final 400, a worker killed mid call); Bedrock and Vertex an llm node and an agent
tool round trip each (signed with fake AWS keys / a Google token minted by the scripted server).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from adapters.settings import Settings
from core.failures import LLM_REJECTED, NODE_CONFIG
from doubles.scripted_llm import ScriptedLLM, error, text, tool_use
from tests.support.providers import OPENAI_KEY
from tests.support.requests import unmarked
from tests.support.stack import Stack, wait_until
from temporalio.exceptions import ApplicationError


@pytest.fixture(autouse=True, scope="module")
def ready(stack: Stack) -> None:
    """A cold stack on a busy machine can take a while to poll: wait for it, not in each test."""
    for service in ("worker", "ingress"):
        wait_until(lambda: stack.http_get(service, "/ready")[0] == 200, timeout=120, interval=0.2, message=f"{service} ready")


def model_name(provider: str) -> str:
    return f"{provider}-model-{uuid.uuid4().hex[:8]}"


def llm_node(provider: str, model: str, prompt: str = "Say hello.", **extra: object) -> dict:
    return {"llm_config": {"provider": provider, "model": model, "prompt": prompt, "system": "Be brief.", **extra}}


def agent(provider: str, model: str, tools: list[str]) -> dict:
    return {"llm_config": {"provider": provider, "model": model, "max_tokens": 512}, "tools": tools, "task": "Work it out.", "max_iterations": 5}


def tool_messages(request) -> list[dict]:
    return [m for m in request.body["messages"] if m["role"] == "tool"]


# -- openai --------------------------------------------------------------------------------------
def test_openai_llm_node_through_chat_completions(stack: Stack, llm: ScriptedLLM) -> None:
    model = model_name("openai")
    llm.script(model, text("Hello from a compatible server.", usage=(30, 6)))
    graph, node = stack.submit_node(llm_node("openai", model))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"] == {"content": "Hello from a compatible server.", "usage": {"input_tokens": 30, "output_tokens": 6}}
    [request] = llm.requests(model)
    assert request.api == "openai" and request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.body["model"] == model  # the bare name: `openai:` only routes inside the worker
    assert request.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    assert "tools" not in request.body


def test_openai_usage_cache_and_cost_in_the_event_and_metrics(stack: Stack, llm: ScriptedLLM) -> None:
    """gpt-4o-mini has a built-in price; cached prompt tokens are counted apart and priced lower."""
    llm.script("gpt-4o-mini", text("priced", usage=(1000, 100, 800)))  # 1800 prompt tokens, 800 of them cached
    graph, node = stack.submit_node(llm_node("openai", "gpt-4o-mini"))
    event = stack.wait_event(graph, node)
    assert event["data"]["output"]["usage"] == {
        "input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 800,
        "cost_usd": pytest.approx((1000 * 0.15 + 100 * 0.60 + 800 * 0.075) / 1e6),
    }

    def cost_line() -> str:
        status, body = stack.http_get("worker", "/metrics")
        lines = [line for line in body.splitlines() if line.startswith("dago_executor_llm_cost_microusd") and 'provider="openai"' in line]
        return lines[0] if status == 200 and lines else ""

    assert wait_until(cost_line, message="the cost metric").endswith(" 270")


def test_openai_agent_tool_call_round_trip(stack: Stack, llm: ScriptedLLM) -> None:
    model = model_name("openai")
    llm.script(model, tool_use(("calculate", {"expression": "6*7"}), say="Computing."), text("It is 42."))
    graph, node, _ = stack.submit_agent(agent("openai", model, ["calculate"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    out = event["data"]["output"]
    assert out["result"] == "It is 42." and out["iterations"] == 2 and out["stop_reason"] == "end_turn"
    assert out["tool_calls"] == [{"name": "calculate", "input": {"expression": "6*7"}, "is_error": False}]
    first, second = llm.requests(model)
    assert [t["function"]["name"] for t in first.body["tools"]] == ["calculate"]
    assert first.body["tools"][0]["type"] == "function" and first.body["tools"][0]["function"]["parameters"]["required"] == ["expression"]
    assistant = second.body["messages"][2]
    assert assistant["role"] == "assistant" and assistant["content"] == "Computing."
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "calculate" and json.loads(call["function"]["arguments"]) == {"expression": "6*7"}
    assert tool_messages(second) == [{"role": "tool", "tool_call_id": call["id"], "content": "42"}]


def test_openai_parallel_tool_calls_each_answered(stack: Stack, llm: ScriptedLLM) -> None:
    model = model_name("openai")
    city = f"city-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "2+3"}), ("get_weather", {"city": city})), text("5 and sunny."))
    graph, node, _ = stack.submit_agent(agent("openai", model, ["calculate", "get_weather"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"]["iterations"] == 2
    assert [c["name"] for c in event["data"]["output"]["tool_calls"]] == ["calculate", "get_weather"]
    first, second = llm.requests(model)
    calls = second.body["messages"][2]["tool_calls"]
    answers = tool_messages(second)
    assert [a["tool_call_id"] for a in answers] == [c["id"] for c in calls] and len(calls) == 2  # one tool message per call, in order
    assert answers[0]["content"] == "5" and city in answers[1]["content"]
    assert [c["city"] for c in stack.mcp_calls("get_weather")].count(city) == 1


def test_openai_tool_error_reaches_the_model_marked(stack: Stack, llm: ScriptedLLM) -> None:
    model = model_name("openai")
    llm.script(model, tool_use(("calculate", {"expression": "1/0"})), text("Cannot divide by zero."))
    graph, node, _ = stack.submit_agent(agent("openai", model, ["calculate"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"]["tool_calls"] == [{"name": "calculate", "input": {"expression": "1/0"}, "is_error": True}]
    [answer] = tool_messages(llm.requests(model)[1])
    assert answer["content"].startswith("[tool error] ") and "division by zero" in answer["content"]
    # read back by the scripted server, it is an is_error tool_result again
    [result] = [b for b in llm.requests(model)[1].messages["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert result["is_error"] is True and "division by zero" in result["content"]


def test_openai_tool_images_reach_the_model_as_image_parts(stack: Stack, llm: ScriptedLLM) -> None:
    """Tool messages carry text only: an MCP tool's image follows them as a user `image_url` part."""
    from tests.support.mcp_server import PNG_1x1

    model = model_name("openai")
    tag = f"caption-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("picture", {"caption": tag})), text("I saw it."))
    graph, node, _ = stack.submit_agent(agent("openai", model, ["picture"]))
    assert stack.wait_event(graph, node)["data"]["output"]["result"] == "I saw it."
    second = llm.requests(model)[1]
    call_id = second.body["messages"][2]["tool_calls"][0]["id"]
    tool, images = second.body["messages"][3:]
    assert tool == {"role": "tool", "tool_call_id": call_id, "content": f"{tag}\nattached note"}
    assert images == {"role": "user", "content": [
        {"type": "text", "text": f"(images returned by tool call {call_id})"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1x1}"}},
    ]}


def test_openai_rate_limit_honours_retry_after(stack: Stack, llm: ScriptedLLM) -> None:
    model = model_name("openai")
    llm.script(model, error(429, "slow down", headers={"retry-after": "3"}), text("ok"))
    graph, node = stack.submit_node(llm_node("openai", model))
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["content"] == "ok"
    first, second = llm.requests(model)
    assert first.api == second.api == "openai"
    assert second.at - first.at >= 2.9  # the provider's delay, not the policy's 1 s first interval


def test_openai_bad_request_fails_the_node_at_once(stack: Stack, llm: ScriptedLLM) -> None:
    model = model_name("openai")
    llm.script(model, error(400, "unsupported parameter: temperature"))
    graph, node = stack.submit_node(llm_node("openai", model))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == f"llm openai:{model}: LLM request rejected: 400 unsupported parameter: temperature"
    time.sleep(0.5)
    assert llm.calls(model) == 1


@pytest.fixture(scope="module")
def crashable(stack: Stack) -> Iterator[tuple[str, dict[str, str]]]:
    """A worker and an ingress of their own (own queue and stream), with a short heartbeat timeout
    so the call orphaned by a SIGKILL is retried within seconds."""
    tag = uuid.uuid4().hex[:6]
    env = {"TEMPORAL_TASK_QUEUE": f"providers-{tag}", "WORK_STREAMS": f"providers-{tag}.work", "ACTIVITY_HEARTBEAT_TIMEOUT": "5"}
    stack.start_service("worker", "worker-providers", **env)
    stack.start_service("ingress", "ingress-providers", **env)
    for service in ("worker-providers", "ingress-providers"):
        wait_until(lambda: stack.http_get(service, "/ready")[0] == 200, timeout=120, interval=0.2, message=f"{service} ready")
    yield env["WORK_STREAMS"], env
    for name in ("ingress-providers", "worker-providers"):
        stack.procs.pop(name).stop()


@pytest.mark.slow
def test_openai_worker_killed_mid_call_resumes_without_repeating_finished_calls(stack: Stack, llm: ScriptedLLM, crashable) -> None:
    stream, env = crashable
    model = model_name("openai")
    tag = uuid.uuid4().hex[:8]
    llm.script(model, tool_use(("echo", {"text": tag})), text("never delivered", hold=30), text("finished after the crash"))
    graph, node = f"g-{uuid.uuid4().hex[:10]}", "n1"
    stack.submit({"graph_id": graph, "node_id": node, "id": str(uuid.uuid4()), "config": agent("openai", model, ["echo"])}, stream=stream)
    wait_until(lambda: llm.calls(model) == 2, timeout=60, message="iteration 2 in flight")
    stack.procs["worker-providers"].kill()  # SIGKILL
    stack.start_service("worker", "worker-providers", **env)
    event = stack.wait_event(graph, node, timeout=90)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "finished after the crash"
    iterations = [len(r.body["messages"]) for r in llm.requests(model)]
    assert iterations == [2, 4, 4]  # iteration 1 once (system + task); only the unfinished call again
    assert len([c for c in stack.mcp_calls("echo") if c["text"] == tag]) == 1


# -- bedrock and vertex: Claude through the anthropic SDK's platform clients ----------------------
@pytest.mark.parametrize("provider", ["bedrock", "vertex"])
def test_platform_llm_node(stack: Stack, llm: ScriptedLLM, provider: str) -> None:
    model = model_name(provider)
    llm.script(model, text(f"Hello from {provider}.", usage=(12, 4)))
    graph, node = stack.submit_node(llm_node(provider, model))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"] == {"content": f"Hello from {provider}.", "usage": {"input_tokens": 12, "output_tokens": 4}}
    [request] = llm.requests(model)
    assert request.api == provider
    sent = unmarked(request.body)
    assert sent["messages"] == [{"role": "user", "content": "Say hello."}] and sent["system"] == "Be brief."
    assert "model" not in request.body and request.body["anthropic_version"]  # the model is in the path
    if provider == "bedrock":
        assert request.path == f"/model/{model}/invoke"
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDSCRIPTED/")
    else:
        assert request.path == f"/v1/projects/scripted-project/locations/us-east5/publishers/anthropic/models/{model}:rawPredict"
        assert request.headers["authorization"].startswith("Bearer ya29.scripted-")  # minted through Google's ADC


@pytest.mark.parametrize("provider", ["bedrock", "vertex"])
def test_platform_agent_tool_round_trip(stack: Stack, llm: ScriptedLLM, provider: str) -> None:
    model = model_name(provider)
    llm.script(model, tool_use(("calculate", {"expression": "6*7"})), text("42."))
    graph, node, _ = stack.submit_agent(agent(provider, model, ["calculate"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"]["result"] == "42." and event["data"]["model"] == f"{provider}:{model}"
    first, second = llm.requests(model)
    [call] = [b for b in second.body["messages"][1]["content"] if b["type"] == "tool_use"]
    assert unmarked(second.body)["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": call["id"], "content": "42"}]
    assert {r.api for r in (first, second)} == {provider}


# -- the offline model (`echo*` models: what `make run` uses without a key) ----------------------
@pytest.mark.parametrize("provider", ["anthropic", "openai", "bedrock", "vertex"])
def test_offline_model_answers_llm_and_agent_nodes_on_every_provider(stack: Stack, llm: ScriptedLLM, provider: str) -> None:
    model = f"echo-{provider}-{uuid.uuid4().hex[:6]}"  # no script: the offline model answers
    graph, node = stack.submit_node(llm_node(provider, model, prompt="ping"))
    assert stack.wait_event(graph, node)["data"]["output"]["content"] == "echo: ping"
    config = {**agent(provider, model, ["calculate"]), "task": "What is 6*7?"}
    graph, node, _ = stack.submit_agent(config)
    out = stack.wait_event(graph, node)["data"]["output"]
    assert out["result"] == "Done. The tools answered: 42" and out["tool_calls"] == [{"name": "calculate", "input": {"expression": "6*7"}, "is_error": False}]
    assert {r.api for r in llm.requests(model)} == {provider}


# -- which providers a node may name --------------------------------------------------------------
def _settings(**env: str) -> Settings:
    return Settings.from_env({"LLM_API_KEY": "k", **env})


def test_a_provider_the_worker_does_not_serve_is_a_config_error() -> None:
    from activities.resolve import ResolveActivities

    resolve = ResolveActivities(None, _settings(LLM_PROVIDERS="openai"))  # type: ignore[arg-type]
    with pytest.raises(ApplicationError, match="llm_config.provider 'bedrock' is not configured on this worker") as err:
        resolve._model_for("bedrock", "anthropic.claude-v2")
    assert err.value.type == NODE_CONFIG and err.value.non_retryable
    with pytest.raises(ApplicationError, match="llm_config.model required with llm_config.provider 'openai'"):
        resolve._model_for("openai", None)
    assert resolve._model_for("openai", "gpt-4o") == "gpt-4o"
    assert resolve._model_for(None, None) == "claude-sonnet-4-20250514"  # the default provider's LLM_MODEL


def test_the_llm_step_refuses_a_provider_it_does_not_serve() -> None:
    from activities.llm import LlmProviders

    providers = LlmProviders({}, "anthropic")
    with pytest.raises(ApplicationError, match="LLM provider 'vertex' is not configured on this worker") as err:
        providers.pick("vertex:claude-sonnet-4@20250514")
    assert err.value.type == LLM_REJECTED and err.value.non_retryable
