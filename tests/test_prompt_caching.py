"""Prompt caching and budgets (docs/agent.md): what the real anthropic client sends the scripted
Messages API, what the scripted model bills for it (doubles/metering.py), and a budget stop.

The scripted model meters every prompt with a cache of its own: the tokens up to a prefix an
earlier request marked are cache reads, billed at 0.1× the input price; so these tests see the
saving as a provider would bill it, not only the markers.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import anthropic
import pytest

from activities.providers.anthropic_api import AnthropicProvider
from activities.providers.prompt_cache import MAX_BREAKPOINTS, breakpoints, with_breakpoints
from core.step_io import LlmRequest
from doubles.metering import METERED, PromptCache
from doubles.scripted_llm import ScriptedLLM, text, tool_use
from tests.support.requests import unmarked
from tests.support.stack import Stack

TOOLS = [{"name": f"tool{n}", "description": "d" * 200, "input_schema": {"type": "object"}} for n in range(3)]


def marked(block: dict[str, Any]) -> bool:
    return block.get("cache_control") == {"type": "ephemeral"}


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "the task"}]
    for n in range(turns):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{n}", "name": "tool0", "input": {}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{n}", "content": "x" * 400}]})
    return messages


# -- where the breakpoints go (pure) -----------------------------------------------------------
def test_breakpoints_on_tools_system_the_newest_message_and_the_one_the_previous_call_marked() -> None:
    messages = conversation(3)
    before = copy.deepcopy(messages)

    system, tools, sent = with_breakpoints("be brief", TOOLS, messages)

    assert messages == before  # the transcript in workflow state is never changed
    assert [marked(t) for t in tools] == [False, False, True]
    assert system == [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    assert [i for i, m in enumerate(sent) if isinstance(m["content"], list) and marked(m["content"][-1])] == [len(sent) - 3, len(sent) - 1]
    assert breakpoints({"tools": tools, "system": system, "messages": sent}) == MAX_BREAKPOINTS


def test_the_first_call_marks_its_only_message_and_a_string_content_becomes_a_block() -> None:
    system, tools, sent = with_breakpoints(None, None, [{"role": "user", "content": "the task"}])
    assert (system, tools) == (None, None)
    assert sent == [{"role": "user", "content": [{"type": "text", "text": "the task", "cache_control": {"type": "ephemeral"}}]}]


def test_a_loop_with_breakpoints_reads_each_earlier_turn_from_the_cache() -> None:
    """The scripted model's meter: with the markers, call N reads what call N-1 wrote."""
    cache, uncached = PromptCache(), PromptCache()
    billed = plain = 0.0
    for turns in range(10):
        system, tools, messages = with_breakpoints("be brief", TOOLS, conversation(turns))
        usage = cache.usage({"model": "m", "system": system, "tools": tools, "messages": messages}, [])
        if turns:
            assert usage["cache_read_input_tokens"] > 0 and usage["input_tokens"] == 0
        billed += usage["input_tokens"] + 1.25 * usage["cache_creation_input_tokens"] + 0.1 * usage["cache_read_input_tokens"]
        bare = uncached.usage({"model": "m", "system": "be brief", "tools": TOOLS, "messages": conversation(turns)}, [])
        assert bare["cache_read_input_tokens"] == bare["cache_creation_input_tokens"] == 0
        plain += bare["input_tokens"]
    assert billed < 0.5 * plain


@pytest.mark.parametrize("caching", [True, False], ids=["PROMPT_CACHING=true", "PROMPT_CACHING=false"])
async def test_the_real_client_sends_the_breakpoints_only_when_caching_is_on(llm: ScriptedLLM, caching: bool) -> None:
    model = f"claude-cache-{uuid.uuid4().hex[:6]}"
    llm.script(model, text("ok"))
    client = anthropic.AsyncAnthropic(api_key="k", base_url=llm.base_url, max_retries=0)
    provider = AnthropicProvider("anthropic", client, caching=caching)
    request = LlmRequest(model=model, system="be brief", messages=conversation(2), tools=TOOLS, max_tokens=100)
    try:
        await provider.complete(request, model)
    finally:
        await provider.close()
    (sent,) = llm.requests(model)
    assert breakpoints(sent.body) == (MAX_BREAKPOINTS if caching else 0)
    assert sent.body["messages"][0]["content"] == "the task"  # unmarked messages go as they are


# -- through the whole pipeline ----------------------------------------------------------------
def test_an_agent_loop_sends_breakpoints_and_reports_cache_usage(stack: Stack, llm: ScriptedLLM) -> None:
    model = f"claude-cache-{uuid.uuid4().hex[:6]}"
    turns = [tool_use(("calculate", {"expression": f"{n}*{n}"}), usage=METERED) for n in range(1, 5)]
    llm.script(model, *turns, text("done", usage=METERED))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"], "task": "square some numbers " * 50})

    event = stack.wait_event(graph, node)

    assert event["type"] == "node.completed", event
    sent = [request.body for request in llm.requests(model)]
    assert len(sent) == 5
    for n, body in enumerate(sent):
        assert marked(body["tools"][-1]) and marked(body["system"][-1]), n
        assert marked(body["messages"][-1]["content"][-1]), n
        assert n == 0 or marked(body["messages"][-3]["content"][-1]), n
        assert breakpoints(body) <= MAX_BREAKPOINTS
    usage = event["data"]["output"]["usage"]
    assert usage["cache_read_input_tokens"] > 0 and usage["cache_creation_input_tokens"] > 0, usage
    # What the same five prompts cost with no cache at all, metered the same way:
    meter = PromptCache()
    uncached = sum(meter.usage({**unmarked(body), "model": f"{model}-bare"}, [])["input_tokens"] for body in sent)
    billed = usage["input_tokens"] + 1.25 * usage["cache_creation_input_tokens"] + 0.1 * usage["cache_read_input_tokens"]
    assert billed < 0.7 * uncached, (billed, uncached)
    # The transcript the workflow keeps (and its history) carries no markers.
    transcript = stack.query(wid, "transcript")
    assert transcript and not any(isinstance(m["content"], list) and any("cache_control" in b for b in m["content"]) for m in transcript)


def test_a_token_budget_stops_the_loop_with_node_failed(stack: Stack, llm: ScriptedLLM) -> None:
    model = f"claude-budget-{uuid.uuid4().hex[:6]}"
    llm.script(model, *[tool_use(("calculate", {"expression": f"{n}+1"}), usage=(100, 20)) for n in range(5)])
    graph, node, _ = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"], "max_total_tokens": 300})

    event = stack.wait_event(graph, node)

    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "budget of 300 tokens exceeded after 3 iterations (360 tokens used)"
    assert llm.calls(model) == 3


def test_a_cost_budget_on_a_model_without_a_price_is_a_config_error(stack: Stack, llm: ScriptedLLM) -> None:
    model = f"claude-unpriced-{uuid.uuid4().hex[:6]}"
    graph, node, _ = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"], "max_cost_usd": 1.5})

    event = stack.wait_event(graph, node)

    assert event["type"] == "node.failed"
    assert f"max_cost_usd 1.5 cannot be enforced: model {model!r} has no price on this worker" in event["data"]["error"]
    assert llm.calls(model) == 0
