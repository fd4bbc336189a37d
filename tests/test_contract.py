"""Pure logic: contract parsing, mode detection, templates, MCP configuration (the calculator: test_calculate.py)."""

from __future__ import annotations

import json

import pytest

from activities.mcp_servers import configured_servers, load_mcp_config, parse_mcp_servers
from executor.config import Settings
from executor.contract import (
    AgentNode,
    ContractError,
    LlmNode,
    MalformedEntry,
    ToolNode,
    parse_node_config,
    parse_work_entry,
)
from executor.templates import Renderer, TemplateError, Variables


def entry(doc: object, **kw: object) -> dict:
    data = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
    return parse_work_entry({b"data": data}, stream="executor.work", entry_id="1-0", max_bytes=kw.get("max_bytes", 10_000))


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
        ({"llm_config": {"prompt": "p", "temperature": 3}}, "node config: llm_config.temperature: Input should be less than or equal to 1"),
        ({"llm_config": {"prompt": "p", "max_tokens": 0}}, "node config: llm_config.max_tokens: Input should be greater than or equal to 1"),
        ({"llm_config": {}, "tools": ["a"], "max_iterations": -1}, "node config: max_iterations: Input should be greater than or equal to 1"),
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


def test_both_envelopes_parse_to_work_items() -> None:
    a = entry({"graph_id": "g", "node_id": "n", "node_type": "executor", "config": {"tool_name": "t"}, "dependencies": ["x"]})
    assert a.envelope == "executor" and a.config == {"tool_name": "t"}
    assert a.workflow_id == "node:g:n:executor.work@1-0"
    b = entry({"id": "e-1", "type": "node.work", "execution_id": "g", "data": {"node_id": "n", "state": {"k": 1}, "node_state": {}}})
    assert b.envelope == "orchestrator" and b.config is None and b.inputs == {"k": 1}
    assert b.workflow_id == "node:g:n:e-1"


@pytest.mark.parametrize(
    ("raw", "reason", "ids"),
    [
        ("{oops", "data is not JSON", (None, None)),
        ("[1, 2]", "data must be a JSON object, got list", (None, None)),
        (b"\xff\xfe", "data is not valid UTF-8", (None, None)),
        ({"graph_id": "g", "node_id": "n", "config": 5}, "work item: config: Input should be a valid dictionary", ("g", "n")),
        ({"graph_id": "", "node_id": "n", "config": {}}, "work item: graph_id: String should have at least 1 character", (None, "n")),
        ({"graph_id": 7, "node_id": "n", "config": {}}, "work item: graph_id: Input should be a valid string", (None, "n")),
        ({"data": {"node_id": "n"}}, "work item: execution_id or data.graph_id required", (None, "n")),
        ({"execution_id": "g", "data": {"graph_id": "g"}}, "work item: data.node_id: Field required", ("g", None)),
    ],
)
def test_malformed_entries_name_the_reason_and_recover_ids(raw: object, reason: str, ids: tuple) -> None:
    with pytest.raises(MalformedEntry) as err:
        entry(raw)
    assert err.value.reason.startswith(reason)
    assert (err.value.graph_id, err.value.node_id) == ids


def test_entry_without_data_field_and_oversized_entry() -> None:
    with pytest.raises(MalformedEntry, match="entry has no 'data' field"):
        parse_work_entry({b"payload": b"{}"}, stream="s", entry_id="1-0", max_bytes=100)
    with pytest.raises(MalformedEntry, match="entry too large: 2000 bytes"):
        entry("x" * 2000, max_bytes=1000)


def test_templates_render_prompts_and_typed_tool_params() -> None:
    variables = Variables({"topic": "tides", "n": 3}, {"fetch": {"status": "completed", "output": {"rows": [1]}}})
    r = Renderer(variables)
    assert r.text("About {{topic}} x{{ n }}: {{fetch}}") == 'About tides x3: {"rows": [1]}'
    assert r.value({"a": "{{fetch}}", "b": ["{{n}}", "n={{n}}"], "c": {"d": "{{topic}}"}}) == {
        "a": {"rows": [1]}, "b": [3, "n=3"], "c": {"d": "tides"},
    }
    r.check()


def test_unknown_template_variables_fail_or_are_kept_by_setting() -> None:
    strict = Renderer(Variables({}, {}))
    strict.text("{{a}} {{b}} {{a}}")
    with pytest.raises(TemplateError, match="unknown template variables: a, b"):
        strict.check()
    lenient = Renderer(Variables({}, {}), on_missing="keep")
    assert lenient.text("keep {{a}}") == "keep {{a}}"
    lenient.check()


def test_mcp_servers_variable_and_config_file(tmp_path) -> None:
    servers = parse_mcp_servers("weather=http://127.0.0.1:9000/mcp, files=stdio:npx -y @scope/server '/tmp/a b'")
    assert [(s.name, s.transport) for s in servers] == [("weather", "http"), ("files", "stdio")]
    assert servers[1].command == "npx" and servers[1].args == ["-y", "@scope/server", "/tmp/a b"]
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "git": {"command": "uvx", "args": ["mcp-server-git"], "env": {"TOKEN": "s3cret"}},
        "remote": {"url": "https://example.invalid/mcp", "headers": {"Authorization": "Bearer s3cret"}},
        "off": {"command": "x", "disabled": True},
    }}))
    loaded = load_mcp_config(path)
    assert [(s.name, s.transport) for s in loaded] == [("git", "stdio"), ("remote", "http")]
    assert "s3cret" not in repr(loaded) and "s3cret" not in str(loaded[1])
    with pytest.raises(ContractError, match="configured twice"):
        configured_servers("git=http://h/mcp", str(path))
    with pytest.raises(ContractError, match="expected name=url or name=stdio:command"):
        parse_mcp_servers("just-a-name")
    with pytest.raises(ContractError, match="url must start with http"):
        parse_mcp_servers("x=ftp://nope")


def test_settings_from_environment_with_readable_errors() -> None:
    s = Settings.from_env({"WORK_STREAMS": "a, b", "REPORT_FAILURES_ON_COMPLETED": "true", "LOG_LEVEL": "WARN", "LLM_API_KEY": "k"})
    assert s.work_streams == ["a", "b"] and s.report_failures_on_completed and s.log_level == "warn"
    assert "k" not in repr(s.llm_api_key)
    assert s.result_stream("failed") == s.completed_stream
    with pytest.raises(ContractError, match="configuration: max_iterations"):
        Settings.from_env({"MAX_ITERATIONS": "0"})


def test_llm_node_prompt_is_required() -> None:
    node = parse_node_config({"llm_config": {"prompt": "hi", "model": "m"}})
    assert isinstance(node, LlmNode) and node.prompt == "hi"


def test_configuration_reference_documents_every_setting() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in doc]
    assert not missing, f"undocumented settings: {missing}"
