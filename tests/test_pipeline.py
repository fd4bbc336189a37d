"""The durable node pipeline end to end: xadd on a work stream → ingress → Temporal workflow on a
real worker → exactly one result event. Real Temporal, Redis, anthropic client and MCP servers."""

from __future__ import annotations

import json
import time
import uuid

from doubles.scripted_llm import error, text
from tests.support.history import local_steps
from tests.support.requests import unmarked
from tests.support.stack import API_KEY, COMPLETED, FAILED, ORCHESTRATOR_WORK, Stack, wait_until


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tool_node_calculate_completes(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "2*(3+4)"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed"
    assert event["data"]["output"] == 14
    # Both result shapes: the Go worker's top-level ids and the orchestrator's execution_id + data.*
    assert event["graph_id"] == graph and event["node_id"] == node
    assert event["execution_id"] == graph and event["data"]["node_id"] == node and event["data"]["graph_id"] == graph
    assert event["id"] and event["timestamp"].endswith("Z")
    assert event["data"]["workflow_id"].startswith(f"node:{graph}:{node}:")


def test_llm_node_renders_templates_from_inputs_and_finished_nodes(stack: Stack, llm) -> None:
    model = unique("claude-test")
    llm.script(model, text("A short summary.", usage=(42, 7)))
    graph = unique("g")
    stack.redis.set(
        f"dago:state:{graph}",
        json.dumps({
            "graph_id": graph, "status": "running", "inputs": {"topic": "tides", "limits": {"words": 50}},
            "node_states": {"fetch": {"node_id": "fetch", "status": "completed", "output": {"title": "Moon"}}},
        }),
        ex=3600,
    )
    stack.submit_node(
        {"llm_config": {"model": model, "prompt": "Summarise {{topic}} from {{fetch}} in {{limits}}", "system": "Be brief.", "max_tokens": 300}},
        graph_id=graph, node_id="summarize",
    )
    event = stack.wait_event(graph, "summarize")
    assert event["type"] == "node.completed", event
    assert event["data"]["output"] == {"content": "A short summary.", "usage": {"input_tokens": 42, "output_tokens": 7}}
    [request] = llm.requests(model)
    sent = unmarked(request.body)
    assert sent["messages"] == [{"role": "user", "content": 'Summarise tides from {"title": "Moon"} in {"words": 50}'}]
    assert sent["system"] == "Be brief."
    assert request.body["max_tokens"] == 300
    assert request.body["temperature"] == 0.7
    assert request.headers.get("authorization") == f"Bearer {API_KEY}" or request.headers.get("x-api-key") == API_KEY


def test_orchestrator_envelope_reads_config_from_graph_state_and_writes_result_back(stack: Stack) -> None:
    graph = unique("g")
    state = {
        "graph_id": graph, "status": "running", "inputs": {"a": 6},
        "node_states": {"prev": {"node_id": "prev", "status": "completed", "output": 7}},
        "graph": {"id": graph, "entry_node": "calc", "edges": [], "nodes": {
            "calc": {"id": "calc", "type": "executor", "executor_type": "tool",
                     "config": {"tool_name": "calculate", "tool_params": {"expression": "{{a}} * {{prev}}"}}},
        }},
    }
    stack.redis.set(f"dago:state:{graph}", json.dumps(state), ex=3600)
    event_id = str(uuid.uuid4())
    stack.submit(
        {"id": event_id, "type": "node.work", "timestamp": "2026-11-26T10:00:00Z", "execution_id": graph,
         "data": {"node_id": "calc", "node_type": "executor", "graph_id": graph, "state": {}, "node_state": {}}},
        stream=ORCHESTRATOR_WORK,
    )
    event = stack.wait_event(graph, "calc")
    assert event["type"] == "node.completed" and event["data"]["output"] == 42
    assert event["data"]["workflow_id"] == f"node:{graph}:calc:{event_id}"
    written = json.loads(stack.redis.get(f"dago:state:{graph}"))
    assert written["node_states"]["calc"]["status"] == "completed"
    assert written["node_states"]["calc"]["output"] == 42
    assert written["node_states"]["calc"]["completed_at"]
    assert written["graph"]["edges"] == []  # the rest of the state round-trips untouched
    assert 3000 < stack.redis.ttl(f"dago:state:{graph}") <= 3600  # TTL kept


def test_config_with_neither_tool_name_nor_llm_config_fails_naming_tool_name(stack: Stack) -> None:
    graph, node = stack.submit_node({"description": "nothing to run"})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert "tool_name required for tool mode" in event["data"]["error"]
    assert "output" not in event["data"]


def test_unknown_template_variable_fails_naming_it(stack: Stack, llm) -> None:
    model = unique("claude-test")
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "Use {{missing_one}} and {{other}}"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "unknown template variables: missing_one, other"
    assert llm.calls(model) == 0


def test_unknown_tool_fails_without_retries(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "no_such_tool", "tool_params": {}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert "unknown tool 'no_such_tool'" in event["data"]["error"]
    history = stack.temporal(lambda c: c.get_workflow_handle(event["data"]["workflow_id"]).fetch_history())
    starts = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    attempts = [e.activity_task_started_event_attributes.attempt for e in starts]
    assert attempts == [1, 1]  # call_tool once, emit
    assert [(m["activity_type"], m["attempt"]) for m in local_steps(history)] == [("resolve_node", 1)]  # a local step


def test_mcp_tool_over_streamable_http(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "mcp__http__get_weather", "tool_params": {"city": "Oslo"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"] == {"city": "Oslo", "temperature_c": 16.0, "conditions": "sunny"}
    assert event["data"]["server"] == "http"
    assert [c["transport"] for c in stack.mcp_calls("get_weather") if c["city"] == "Oslo"] == ["http"]


def test_mcp_tool_over_stdio(stack: Stack) -> None:
    tag = unique("hello")
    graph, node = stack.submit_node({"tool_name": "mcp__stdio__echo", "tool_params": {"text": tag}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"] == {"result": f"stdio: {tag}"}
    assert [c["transport"] for c in stack.mcp_calls("echo") if c["text"] == tag] == ["stdio"]


def test_plain_tool_name_picks_first_configured_server(stack: Stack) -> None:
    tag = unique("plain")
    graph, node = stack.submit_node({"tool_name": "echo", "tool_params": {"text": tag}})
    event = stack.wait_event(graph, node)
    assert event["data"]["server"] == "http"  # MCP_SERVERS lists http before stdio
    assert event["data"]["output"] == {"result": f"http: {tag}"}


def test_mcp_tool_error_result_fails_the_node_with_its_message(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "fail", "tool_params": {"message": "the printer is on fire"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "tool fail: the printer is on fire"


def test_mcp_non_text_content_is_kept(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "picture", "tool_params": {"caption": "a dot"}})
    output = stack.wait_event(graph, node)["data"]["output"]
    kinds = [block["type"] for block in output["content"]]
    assert kinds == ["text", "image", "resource"]
    assert output["content"][1]["mimeType"] == "image/png"
    assert output["content"][2]["resource"]["text"] == "attached note"


def test_mcp_text_that_is_json_is_parsed(stack: Stack) -> None:
    payload = json.dumps({"rows": [1, 2, 3]})
    graph, node = stack.submit_node({"tool_name": "json_text", "tool_params": {"payload": payload}})
    output = stack.wait_event(graph, node)["data"]["output"]
    assert output == {"rows": [1, 2, 3]}


def test_duplicate_delivery_runs_once(stack: Stack) -> None:
    graph = unique("g")
    doc = {"id": str(uuid.uuid4()), "graph_id": graph, "node_id": "n1", "config": {"tool_name": "mcp__stdio__echo", "tool_params": {"text": graph}}}
    stack.submit(doc)
    stack.submit(doc)  # the orchestrator (or a replay) delivers the same work item twice
    events = stack.settle(graph, "n1", seconds=1.5)
    stack.submit(doc)  # and once more after the first run closed
    time.sleep(1.5)
    events = stack.events(graph, "n1")
    assert len(events) == 1
    assert len([c for c in stack.mcp_calls("echo") if c["text"] == graph]) == 1
    wait_until(lambda: stack.pending() == 0, message="no pending entries")


def test_malformed_entry_is_dead_lettered_acked_and_reported(stack: Stack) -> None:
    graph = unique("g")
    before = len(stack.dead_letters())
    stack.submit("{not json")
    stack.submit(json.dumps({"graph_id": graph, "node_id": "broken", "config": "not an object"}))
    wait_until(lambda: len(stack.dead_letters()) >= before + 2, message="two dead letters")
    dead = stack.dead_letters()[before:]
    reasons = sorted(d["reason"] for d in dead)
    assert any(r.startswith("data is not JSON") for r in reasons)
    assert any("config" in r for r in reasons)
    event = stack.wait_event(graph, "broken")
    assert event["type"] == "node.failed" and event["data"]["error"].startswith("malformed work item:")
    wait_until(lambda: stack.pending() == 0, message="no pending entries")


def test_retryable_llm_status_is_retried_and_then_succeeds(stack: Stack, llm) -> None:
    model = unique("claude-test")
    llm.script(model, error(429, "slow down", headers={"retry-after": "0"}), error(529, "overloaded"), error(503), text("finally"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"]["content"] == "finally"
    assert llm.calls(model) == 4


def test_non_retryable_llm_status_fails_at_once_with_provider_message(stack: Stack, llm) -> None:
    model = unique("claude-test")
    llm.script(model, error(400, "prompt is too long: 300000 tokens > 200000 maximum"))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert "prompt is too long" in event["data"]["error"] and "400" in event["data"]["error"]
    time.sleep(1.0)
    assert llm.calls(model) == 1


def test_failures_also_land_on_the_failed_stream_only(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "1/0"}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed" and event["data"]["error"] == "tool calculate: division by zero"
    on_completed = [json.loads(f["data"]) for _, f in stack.redis.xrange(COMPLETED)]
    on_failed = [json.loads(f["data"]) for _, f in stack.redis.xrange(FAILED)]
    assert not [e for e in on_completed if e["graph_id"] == graph]
    assert len([e for e in on_failed if e["graph_id"] == graph]) == 1


def test_published_stdio_server_mcp_server_time_works_unmodified(stack: Stack) -> None:
    graph, node = stack.submit_node(
        {"tool_name": "mcp__time__convert_time", "tool_params": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}}
    )
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed", event
    output = event["data"]["output"]
    assert output["time_difference"] == "+9.0h"
    assert output["source"]["datetime"].endswith("T12:00:00+00:00") and output["target"]["datetime"].endswith("T21:00:00+09:00")


def test_published_http_server_everything_works_unmodified(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "get-structured-content", "tool_params": {"location": "Chicago"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed", event
    assert event["data"]["server"] == "everything"
    assert event["data"]["output"] == {"temperature": 36, "conditions": "Light rain / drizzle", "humidity": 82}
    graph, node = stack.submit_node({"tool_name": "mcp__everything__get-sum", "tool_params": {"a": 2, "b": 3}})
    assert stack.wait_event(graph, node)["data"]["output"] == "The sum of 2 and 3 is 5."


def test_tool_arguments_that_break_the_schema_fail_without_calling(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "mcp__everything__get-sum", "tool_params": {"a": "two", "b": 3}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "tool mcp__everything__get-sum: invalid arguments at a: 'two' is not of type 'number'"
