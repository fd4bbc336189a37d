"""The Messages <-> Chat Completions translation (pure functions), the usage mapping, the price
table and provider-qualified model names: unit tests beside the end-to-end ones (test_providers.py)."""

from __future__ import annotations

import json

import pytest

from activities.providers.openai_messages import (
    TOOL_ERROR_PREFIX,
    UnusableReply,
    chat_request,
    reply_blocks,
    usage_counts,
)
from activities.providers.pricing import PriceTable
from core.errors import ContractError
from core.node_config import parse_node_config, qualified_model, split_model
from core.step_io import Usage

PNG = "iVBORw0KGgo="
TOOL = {"name": "calculate", "description": "Evaluate arithmetic", "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}}}


def translate(messages, system=None, tools=()):
    return chat_request(model="m", messages=messages, system=system, tools=list(tools), temperature=0.2, max_tokens=99)


# -- requests: Messages -> Chat Completions ------------------------------------------------------
def test_system_prompt_text_and_settings() -> None:
    request = translate([{"role": "user", "content": "hi"}], system="Be brief.")
    assert request == {
        "model": "m", "temperature": 0.2, "max_tokens": 99,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    }


def test_tool_definitions_become_functions() -> None:
    assert translate([{"role": "user", "content": "x"}], tools=[TOOL])["tools"] == [
        {"type": "function", "function": {"name": "calculate", "description": "Evaluate arithmetic", "parameters": TOOL["input_schema"]}}
    ]


def test_tool_use_blocks_become_tool_calls_with_json_arguments() -> None:
    assistant = {"role": "assistant", "content": [
        {"type": "text", "text": "Let me compute."},
        {"type": "tool_use", "id": "toolu_1", "name": "calculate", "input": {"expression": "6*7"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Zürich"}},
    ]}
    [message] = translate([assistant])["messages"]
    assert message["role"] == "assistant" and message["content"] == "Let me compute."
    assert [(c["id"], c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]] == [
        ("toolu_1", "function", "calculate", {"expression": "6*7"}),
        ("toolu_2", "function", "get_weather", {"city": "Zürich"}),
    ]


def test_tool_only_turn_has_null_content() -> None:
    [message] = translate([{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}])["messages"]
    assert message["content"] is None and json.loads(message["tool_calls"][0]["function"]["arguments"]) == {}


def test_tool_results_become_tool_messages_errors_marked() -> None:
    turn = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "no such city"}], "is_error": True},
    ]}
    assert translate([turn])["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": TOOL_ERROR_PREFIX + "no such city"},
    ]


def test_images_of_a_tool_result_follow_the_tool_messages_as_user_parts() -> None:
    turn = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": [
        {"type": "text", "text": "a chart"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]}]}
    tool, user = translate([turn])["messages"]
    assert tool == {"role": "tool", "tool_call_id": "toolu_9", "content": "a chart"}
    assert user == {"role": "user", "content": [
        {"type": "text", "text": "(images returned by tool call toolu_9)"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}


def test_user_images_and_text_become_content_parts() -> None:
    turn = {"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]}
    assert translate([turn])["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}]


# -- replies: Chat Completions -> Messages -------------------------------------------------------
def completion(message, finish, usage=None):
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}], "usage": usage}


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), ("tool_calls", "tool_use")])
def test_finish_reasons_map_to_stop_reasons(finish: str, stop: str) -> None:
    assert reply_blocks(completion({"content": "x"}, finish)) == ([{"type": "text", "text": "x"}], stop)


def test_tool_calls_become_tool_use_blocks_in_order() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "calculate", "arguments": '{"expression": "1+1"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
    ]
    blocks, stop = reply_blocks(completion({"content": "Two calls.", "tool_calls": calls}, "tool_calls"))
    assert stop == "tool_use"
    assert blocks == [
        {"type": "text", "text": "Two calls."},
        {"type": "tool_use", "id": "call_a", "name": "calculate", "input": {"expression": "1+1"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Oslo"}},
    ]


def test_tool_calls_with_finish_stop_still_ask_for_tools() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "n", "arguments": "{}"}}
    assert reply_blocks(completion({"content": None, "tool_calls": [call]}, "stop"))[1] == "tool_use"


def test_arguments_that_are_not_json_are_unusable_unless_cut_at_length() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "calculate", "arguments": '{"expression": "1+'}}
    with pytest.raises(UnusableReply, match="calculate.*not JSON"):
        reply_blocks(completion({"content": None, "tool_calls": [call]}, "tool_calls"))
    blocks, stop = reply_blocks(completion({"content": None, "tool_calls": [call]}, "length"))
    assert stop == "max_tokens" and blocks[0]["input"] == {}


def test_no_choices_is_unusable() -> None:
    with pytest.raises(UnusableReply, match="no choices"):
        reply_blocks({"choices": []})


def test_a_transcript_round_trips_through_the_scripted_servers_reading() -> None:
    """The scripted server reads Chat Completions back into Messages independently
    (doubles/scripted_openai.py): an agent transcript survives the trip unchanged."""
    from doubles.scripted_openai import messages_body

    transcript = [
        {"role": "user", "content": "Compute 6*7"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "On it."},
            {"type": "tool_use", "id": "toolu_1", "name": "calculate", "input": {"expression": "6*7"}},
            {"type": "tool_use", "id": "toolu_2", "name": "calculate", "input": {"expression": "1/0"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "division by zero", "is_error": True},
        ]},
    ]
    back = messages_body(translate(transcript, system="sys", tools=[TOOL]))
    assert back["messages"] == transcript and back["system"] == "sys" and back["tools"] == [TOOL]


# -- usage and cost ------------------------------------------------------------------------------
def test_openai_usage_takes_cached_tokens_out_of_the_input() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050, "prompt_tokens_details": {"cached_tokens": 800}}
    assert usage_counts(usage) == {"input_tokens": 200, "output_tokens": 50, "cache_read_input_tokens": 800, "cache_creation_input_tokens": 0}
    assert usage_counts(None) == {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def test_usage_sums_cache_fields_and_cost_unknown_stays_unknown() -> None:
    first = Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=100, cost_usd=0.25)
    second = Usage(input_tokens=1, output_tokens=1, cache_creation_input_tokens=7, cost_usd=0.5)
    assert (Usage() + first + second).model_dump() == {
        "input_tokens": 11, "output_tokens": 6, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 100, "cost_usd": 0.75,
    }
    assert (first + Usage(input_tokens=3)).model_dump() == {"input_tokens": 13, "output_tokens": 5, "cache_read_input_tokens": 100}
    assert Usage(input_tokens=3, output_tokens=2).model_dump() == {"input_tokens": 3, "output_tokens": 2}  # the compact wire form


def test_price_table_cost_per_million_tokens_cache_priced_apart() -> None:
    table = PriceTable.load(None)
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_input_tokens=1_000_000, cache_creation_input_tokens=100_000)
    assert table.cost("anthropic", "claude-sonnet-4-20250514", usage) == pytest.approx(3.0 + 1.5 + 0.30 + 0.375)
    assert table.cost("openai", "gpt-4o-mini", Usage(input_tokens=2_000_000)) == pytest.approx(0.30)
    assert table.cost("openai", "llama3.1:8b", usage) is None
    assert table.cost("bedrock", "claude-sonnet-4-20250514", usage) is None  # prices are per provider's model ids


def test_operator_prices_file_overrides_and_adds(tmp_path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"openai": {"gpt-4o-mini": {"input": 1, "output": 2}, "llama3.1:8b": {"input": 0, "output": 0}}}))
    table = PriceTable.load(str(path))
    assert table.cost("openai", "gpt-4o-mini", Usage(input_tokens=1_000_000, cache_read_input_tokens=1_000_000)) == pytest.approx(2.0)
    assert table.cost("openai", "llama3.1:8b", Usage(input_tokens=5)) == 0.0
    assert table.cost("anthropic", "claude-sonnet-4-20250514", Usage(output_tokens=1_000_000)) == pytest.approx(15.0)


@pytest.mark.parametrize(("content", "error"), [
    ("not json", "LLM_PRICES_FILE .*: Expecting value"),
    ('{"openai": {"m": {"input": 1}}}', "openai/m: needs at least input and output"),
    ('{"openai": {"m": {"input": 1, "output": 2, "cached": 1}}}', "unknown fields cached"),
    ('{"openai": {"m": {"input": -1, "output": 2}}}', "prices must be numbers >= 0"),
])
def test_a_bad_prices_file_is_a_clear_error(tmp_path, content: str, error: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ContractError, match=error):
        PriceTable.load(str(path))


# -- provider-qualified model names --------------------------------------------------------------
@pytest.mark.parametrize(("model", "split"), [
    ("openai:gpt-4o", ("openai", "gpt-4o")),
    ("openai:llama3.1:8b", ("openai", "llama3.1:8b")),
    ("llama3.1:8b", (None, "llama3.1:8b")),
    ("bedrock:anthropic.claude-3-5-haiku-20241022-v1:0", ("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0")),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", (None, "anthropic.claude-3-5-haiku-20241022-v1:0")),
    ("openai/gpt-4o", (None, "openai/gpt-4o")),
    ("claude-sonnet-4-20250514", (None, "claude-sonnet-4-20250514")),
])
def test_split_model(model: str, split: tuple) -> None:
    assert split_model(model) == split
    assert split_model(qualified_model(split[0], split[1])) == split


def test_llm_config_provider_is_a_known_name_only() -> None:
    assert parse_node_config({"llm_config": {"prompt": "hi", "provider": "openai"}}).llm_config.provider == "openai"
    with pytest.raises(ContractError, match="llm_config.provider"):
        parse_node_config({"llm_config": {"prompt": "hi", "provider": "http://evil.example"}})
