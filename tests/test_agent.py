"""Agent mode on the real stack: the model (scripted, through the real anthropic client) calls
tools until done; every LLM call and tool call is its own activity."""

from __future__ import annotations

import json
import time
import uuid

from doubles.scripted_llm import text, tool_use
from tests.support.requests import unmarked
from tests.support.stack import Stack, wait_until


def model_name() -> str:
    return f"claude-agent-{uuid.uuid4().hex[:8]}"


def agent(model: str, tools: list[str], **extra: object) -> dict:
    return {"llm_config": {"model": model, "max_tokens": 1024}, "tools": tools, "task": "Work it out.", **extra}


def tool_results(request) -> list[dict]:
    last = unmarked(request.body)["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b["type"] == "tool_result"]


def test_multi_iteration_loop_feeds_tool_results_back(stack: Stack, llm) -> None:
    model = model_name()
    city = f"city-{uuid.uuid4().hex[:6]}"
    llm.script(
        model,
        tool_use(("calculate", {"expression": "6*7"}), say="Let me compute.", usage=(100, 10)),
        tool_use(("get_weather", {"city": city}), usage=(150, 12)),
        text("It is 42 and sunny.", usage=(200, 20)),
    )
    graph, node, _ = stack.submit_agent(agent(model, ["calculate", "get_weather"], system="You are terse."))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    out = event["data"]["output"]
    assert out["result"] == "It is 42 and sunny."
    assert out["iterations"] == 3 and out["stop_reason"] == "end_turn"
    assert out["usage"] == {"input_tokens": 450, "output_tokens": 42}
    assert out["tool_calls"] == [
        {"name": "calculate", "input": {"expression": "6*7"}, "is_error": False},
        {"name": "get_weather", "input": {"city": city}, "is_error": False},
    ]
    first, second, third = llm.requests(model)
    # Tool definitions go with every call: the built-in's schema and the MCP server's own.
    for request in (first, second, third):
        names = {t["name"]: t for t in request.body["tools"]}
        assert set(names) == {"calculate", "get_weather"}
        assert names["calculate"]["input_schema"]["required"] == ["expression"]
        assert names["get_weather"]["input_schema"]["properties"]["city"]["type"] == "string"
        assert unmarked(request.body)["system"] == "You are terse."
    assert unmarked(first.body)["messages"] == [{"role": "user", "content": "Work it out."}]
    # The assistant turn is kept as the API returned it, then answered with tool_result blocks.
    assistant = second.body["messages"][1]
    assert assistant["role"] == "assistant" and [b["type"] for b in assistant["content"]] == ["text", "tool_use"]
    [result] = tool_results(second)
    assert result["tool_use_id"] == assistant["content"][1]["id"] and result["content"] == "42" and "is_error" not in result
    [weather] = tool_results(third)
    assert '"conditions": "sunny"' in weather["content"]
    assert len(stack.mcp_calls("get_weather")) >= 1 and [c for c in stack.mcp_calls("get_weather") if c["city"] == city]


def test_two_tool_calls_in_one_turn_run_in_parallel(stack: Stack, llm) -> None:
    model = model_name()
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("slow", {"seconds": 1.0, "tag": a}), ("slow", {"seconds": 1.0, "tag": b})), text("both done"))
    graph, node, _ = stack.submit_agent(agent(model, ["slow"]))
    event = stack.wait_event(graph, node)
    assert event["data"]["output"]["result"] == "both done"
    started = {c["tag"]: c["at"] for c in stack.mcp_calls("slow_started") if c["tag"] in (a, b)}
    finished = {c["tag"]: c["at"] for c in stack.mcp_calls("slow") if c["tag"] in (a, b)}
    assert set(started) == set(finished) == {a, b}
    assert max(started.values()) < min(finished.values())  # the second began before the first ended
    [_, second] = llm.requests(model)
    assert len(tool_results(second)) == 2


def test_tool_error_result_goes_back_to_the_model_which_recovers(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, tool_use(("fail", {"message": "disk full"})), tool_use(("calculate", {"expression": "1+1"})), text("recovered: 2"))
    graph, node, _ = stack.submit_agent(agent(model, ["fail", "calculate"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed"
    assert event["data"]["output"]["result"] == "recovered: 2"
    assert [c["is_error"] for c in event["data"]["output"]["tool_calls"]] == [True, False]
    [result] = tool_results(llm.requests(model)[1])
    assert result == {"type": "tool_result", "tool_use_id": result["tool_use_id"], "content": "disk full", "is_error": True}


def test_tool_outside_the_node_list_is_refused_not_run(stack: Stack, llm) -> None:
    model = model_name()
    tag = f"forbidden-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("echo", {"text": tag})), text("ok, I will not"))
    graph, node, _ = stack.submit_agent(agent(model, ["calculate"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed"
    [result] = tool_results(llm.requests(model)[1])
    assert result["is_error"] is True and "'echo' is not available" in result["content"]
    assert not [c for c in stack.mcp_calls("echo") if c.get("text") == tag]


def test_max_iterations_fails_the_node_clearly(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, *[tool_use(("calculate", {"expression": f"{i}+1"})) for i in range(3)])
    graph, node, _ = stack.submit_agent(agent(model, ["calculate"], max_iterations=2))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "agent reached max_iterations (2) without finishing"
    assert event["data"]["iterations"] == 2
    assert llm.calls(model) == 2


def test_max_tokens_cut_fails_the_node(stack: Stack, llm) -> None:
    model = model_name()
    llm.script(model, text("and then the", stop_reason="max_tokens"))
    graph, node, _ = stack.submit_agent(agent(model, ["calculate"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "the model's turn was cut at max_tokens (1024) in iteration 1"


def test_unknown_tool_in_the_node_list_fails_the_node(stack: Stack, llm) -> None:
    model = model_name()
    graph, node, _ = stack.submit_agent(agent(model, ["calculate", "no_such_tool"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed" and "unknown tool 'no_such_tool'" in event["data"]["error"]
    assert llm.calls(model) == 0


def _pending(stack: Stack, workflow_id: str) -> list[dict]:
    return stack.query(workflow_id, "pending_approvals")


def _decide(stack: Stack, workflow_id: str, call_id: str, approve: bool, reason: str | None = None) -> str:
    from core.step_io import ApprovalDecision

    decision = ApprovalDecision(call_id=call_id, approve=approve, reason=reason, by="tester")
    return stack.temporal(lambda c: c.get_workflow_handle(workflow_id).execute_update("decide", decision))


def test_approval_lets_the_call_run_and_rejection_goes_back_as_error(stack: Stack, llm) -> None:
    model = model_name()
    yes, no = f"yes-{uuid.uuid4().hex[:6]}", f"no-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("echo", {"text": yes})), tool_use(("echo", {"text": no})), text("done"))
    graph, node, wid = stack.submit_agent(agent(model, ["echo"], require_approval=["echo"]))
    [waiting] = wait_until(lambda: _pending(stack, wid), message="a call waiting for approval")
    assert waiting["tool"] == "echo" and waiting["input"] == {"text": yes}
    time.sleep(0.5)
    assert not [c for c in stack.mcp_calls("echo") if c.get("text") == yes]  # nothing ran before approval
    assert _decide(stack, wid, waiting["call_id"], True) == "approved"
    [second] = wait_until(lambda: _pending(stack, wid), message="the second call waiting")
    assert _decide(stack, wid, second["call_id"], False, "not today") == "rejected"
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed"
    assert len([c for c in stack.mcp_calls("echo") if c.get("text") == yes]) == 1
    assert not [c for c in stack.mcp_calls("echo") if c.get("text") == no]
    [rejected] = tool_results(llm.requests(model)[2])
    assert rejected["is_error"] is True and rejected["content"] == "a human rejected this call of echo: not today"


def test_long_loop_continues_as_new_and_keeps_its_transcript(stack: Stack, llm) -> None:
    model = model_name()
    steps = [tool_use(("calculate", {"expression": f"{i}*2"}), usage=(10, 1)) for i in range(12)]
    llm.script(model, *steps, text("done after 12 tools", usage=(10, 1)))
    graph, node, wid = stack.submit_agent(agent(model, ["calculate"], max_iterations=20))
    event = stack.wait_event(graph, node, timeout=60)
    out = event["data"]["output"]
    assert out["iterations"] == 13 and len(out["tool_calls"]) == 12
    assert out["usage"] == {"input_tokens": 130, "output_tokens": 13}
    assert event["data"]["runs"] >= 2  # continued as new at least once (CONTINUE_AS_NEW_EVENTS=60)
    last = llm.requests(model)[-1]
    assert len(last.body["messages"]) == 1 + 2 * 12  # the whole transcript survived the new runs
    assert len(stack.events(graph, node)) == 1

    async def runs(client) -> int:
        return len([w async for w in client.list_workflows(f"WorkflowId = '{wid}'")])

    assert stack.temporal(runs) >= 2


def test_progress_and_transcript_queries(stack: Stack, llm) -> None:
    model = model_name()
    gate = stack.gate(f"gate-{uuid.uuid4().hex[:6]}")
    llm.script(model, tool_use(("gate", {"name": gate.name}), usage=(7, 3)), text("opened"))
    graph, node, wid = stack.submit_agent(agent(model, ["gate"]))
    wait_until(lambda: [c for c in stack.mcp_calls("gate_started") if c["name"] == gate.name], message="the gate call in flight")
    progress = stack.query(wid, "progress")
    assert progress["mode"] == "agent" and progress["iteration"] == 1 and progress["last_tool"] == "gate"
    assert progress["usage"] == {"input_tokens": 7, "output_tokens": 3} and progress["model"] == model
    transcript = stack.query(wid, "transcript")
    assert [m["role"] for m in transcript] == ["user", "assistant"]
    gate.unlink()
    assert stack.wait_event(graph, node)["data"]["output"]["result"] == "opened"


def test_offline_model_of_the_dev_stack_drives_a_real_loop(stack: Stack) -> None:
    """Without an API key the dev stack answers with the offline `echo` model: a loop still runs."""
    graph, node, _ = stack.submit_agent({"llm_config": {"model": "echo-offline"}, "tools": ["calculate"], "task": "What is (12+30)*2?"})
    out = stack.wait_event(graph, node)["data"]["output"]
    assert out["iterations"] == 2
    assert out["tool_calls"] == [{"name": "calculate", "input": {"expression": "(12+30)*2"}, "is_error": False}]
    assert out["result"] == "Done. The tools answered: 84"


def test_big_tool_results_go_to_payload_storage(stack: Stack, llm) -> None:
    model = model_name()
    tag = uuid.uuid4().hex[:8]
    llm.script(model, tool_use(("blob", {"kilobytes": 300, "tag": tag})), text("read it all"))
    graph, node, wid = stack.submit_agent(agent(model, ["blob"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "read it all"
    [result] = tool_results(llm.requests(model)[1])
    assert len(result["content"]) == 300 * 1024 and result["content"].startswith(tag)  # the model got it whole
    history = stack.temporal(lambda c: c.get_workflow_handle(wid).fetch_history())
    payloads = []
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            payloads += e.activity_task_scheduled_event_attributes.input.payloads
        if e.HasField("activity_task_completed_event_attributes"):
            payloads += e.activity_task_completed_event_attributes.result.payloads
    assert max(len(p.SerializeToString()) for p in payloads) < 16 * 1024  # no big payload in the history...
    references = [p for p in payloads if p.metadata.get("messageType") == b"temporal.api.sdk.v1.ExternalStorageReference"]
    assert len(references) >= 2  # ...but the SDK's references: the tool's result, the next LLM call's input
    assert all(r.external_payloads[0].size_bytes > 300 * 1024 for r in references)
    claims = [json.loads(r.data)["claimData"] for r in references]
    assert all(c["key"] == f"executor:payload:{c['sha256']}" for c in claims)  # content-addressed
    assert all(stack.redis.ttl(c["key"]) > 7 * 86_400 for c in claims)  # kept as long as a node may run (8 days by default)


def _scheduled_activities(stack: Stack, workflow_id: str) -> list[str]:
    history = stack.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


def test_tool_use_cut_at_max_tokens_fails_the_node_without_running_the_tool(stack: Stack, llm) -> None:
    """A turn cut at max_tokens may carry a truncated tool input: it must never reach the tool."""
    model = model_name()
    tag = f"cut-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("echo", {"text": tag}), say="Calling echo.", stop_reason="max_tokens"), text("never asked"))
    graph, node, wid = stack.submit_agent(agent(model, ["echo"]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed", event
    assert event["data"]["error"] == (
        "the model's turn was cut at max_tokens (1024) in iteration 1 while asking for echo: "
        "its input may be truncated, so no tool was called"
    )
    assert llm.calls(model) == 1
    assert not [c for c in stack.mcp_calls("echo") if c.get("text") == tag]  # the MCP server never saw it
    assert "call_tool" not in _scheduled_activities(stack, wid)  # nor was a tool call scheduled


def _approval_node(stack: Stack, llm, **extra: object) -> tuple[str, str, str, dict]:
    model = model_name()
    llm.script(model, tool_use(("echo", {"text": f"wait-{uuid.uuid4().hex[:6]}"})), text("never asked"))
    graph, node, wid = stack.submit_agent(agent(model, ["echo"], require_approval=["echo"], **extra))
    [waiting] = wait_until(lambda: _pending(stack, wid), message="a call waiting for approval")
    return graph, node, wid, waiting


def test_pending_approval_is_cleared_when_the_node_is_cancelled(stack: Stack, llm) -> None:
    graph, node, wid, _ = _approval_node(stack, llm)
    assert stack.query(wid, "progress")["waiting_for_approval"]
    stack.temporal(lambda c: c.get_workflow_handle(wid).cancel())
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed" and event["data"]["error"] == "cancelled by request (Temporal UI or CLI) during agent"
    assert _pending(stack, wid) == []
    assert stack.query(wid, "progress")["waiting_for_approval"] == []


def test_pending_approval_is_cleared_at_the_node_deadline(stack: Stack, llm) -> None:
    graph, node, wid, _ = _approval_node(stack, llm, timeout=8)
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed" and event["data"]["error"] == "node deadline of 8s exceeded during agent"
    assert _pending(stack, wid) == []
    assert stack.query(wid, "progress")["waiting_for_approval"] == []


def test_mcp_images_and_resources_reach_the_model_as_content_blocks(stack: Stack, llm) -> None:
    from tests.support.mcp_server import PNG_1x1

    model = model_name()
    tag = f"caption-{uuid.uuid4().hex[:6]}"
    tiny, reference = "mcp__everything__get-tiny-image", "mcp__everything__get-resource-reference"
    llm.script(
        model,
        tool_use(("picture", {"caption": tag}), (tiny, {}), (reference, {"resourceType": "Blob", "resourceId": 2})),
        text("I saw them"),
    )
    graph, node, _ = stack.submit_agent(agent(model, ["picture", tiny, reference]))
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "I saw them", event
    picture, image, blob = tool_results(llm.requests(model)[1])
    # ours: a caption, an image, an embedded text resource
    assert picture["content"] == [
        {"type": "text", "text": tag},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1x1}},
        {"type": "text", "text": "attached note"},
    ]
    # the published server's image tool
    assert [b["type"] for b in image["content"]] == ["text", "image", "text"]
    source = image["content"][1]["source"]
    assert source["type"] == "base64" and source["media_type"] == "image/png" and source["data"].startswith("iVBOR")
    # a binary resource that is not an image: named in a short text, its base64 not sent
    assert [b["type"] for b in blob["content"]] == ["text", "text", "text"]
    named = blob["content"][1]["text"]
    assert "/blob/2" in named and "text/plain" in named and len(named) < 200
    texts = [b["text"] for r in (picture, image, blob) for b in r["content"] if b["type"] == "text"]
    assert not [t for t in texts if "iVBOR" in t or len(t) > 200]  # no base64 passed off as text
