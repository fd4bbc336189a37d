"""Node config: the Go worker's mode rules, explicit `type`, defaults, and readable errors."""

from __future__ import annotations

import pytest

from core.node_config import AgentNode, LlmNode, ToolNode, parse_node_config
from core.errors import ContractError


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        ({"tool_name": "x"}, "tool"),
        ({"tool_name": "x", "llm_config": {"prompt": "p"}, "tools": ["a"]}, "tool"),  # rule 1 wins
        ({"llm_config": {"prompt": "p"}, "tools": ["calculate"]}, "agent"),
        ({"llm_config": {"prompt": "p"}}, "llm"),
        ({"llm_config": {"prompt": "p"}, "tools": []}, "llm"),
        ({"type": "agent", "llm_config": {}, "tools": ["calculate"], "tool_name": "x"}, "agent"),  # explicit type wins
    ],
)
def test_mode_detection_follows_the_go_worker_then_explicit_type(config: dict, mode: str) -> None:
    assert parse_node_config(config).mode == mode


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "node config: tool_name required for tool mode (config has neither tool_name nor llm_config)"),
        ({"type": "tool", "llm_config": {}}, "node config: tool_name required for tool mode"),
        ({"type": "dance"}, "node config: unknown type 'dance' (expected one of agent, llm, tool)"),
        ({"llm_config": {"model": "m"}}, "node config: llm_config.prompt required for llm mode"),
        ({"type": "agent", "llm_config": {}}, "node config: tools required for agent mode (a non-empty list)"),
        ({"tool_name": "x", "tool_params": [1]}, "node config: tool_params must be a JSON object"),
        (
            {"llm_config": {"prompt": "p", "temperature": 3}},
            "node config: llm_config.temperature: Input should be less than or equal to 1",
        ),
        (
            {"llm_config": {"prompt": "p", "max_tokens": 0}},
            "node config: llm_config.max_tokens: Input should be greater than or equal to 1",
        ),
        (
            {"llm_config": {}, "tools": ["a"], "max_iterations": -1},
            "node config: max_iterations: Input should be greater than or equal to 1",
        ),
        ("nope", "node config: expected a JSON object, got str"),
    ],
)
def test_bad_node_config_reads_as_one_clear_line(config: object, message: str) -> None:
    with pytest.raises(ContractError) as err:
        parse_node_config(config)
    assert str(err.value) == message


def test_orchestrator_parameters_name_is_accepted_for_tool_params() -> None:
    node = parse_node_config({"tool_name": "calculate", "parameters": {"expression": "1+1"}})
    assert isinstance(node, ToolNode) and node.tool_params == {"expression": "1+1"}


def test_agent_defaults_and_system_from_llm_config() -> None:
    node = parse_node_config({"llm_config": {"system": "be terse"}, "tools": ["calculate"]})
    assert isinstance(node, AgentNode)
    assert node.task == "Complete the assigned task." and node.system == "be terse"
    assert node.llm_config.temperature == 0.7 and node.llm_config.max_tokens == 4096
    top = parse_node_config({"llm_config": {}, "tools": ["x"], "system": "top level"})
    assert top.system == "top level"


def test_llm_node_prompt_is_required() -> None:
    node = parse_node_config({"llm_config": {"prompt": "hi", "model": "m"}})
    assert isinstance(node, LlmNode) and node.prompt == "hi"
