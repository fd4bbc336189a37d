"""MCP servers that never answer, and what stdio servers write to stderr, on real processes.

Their own stack (the shared one's MCP configuration stays untouched): a stdio "server" that never
answers the handshake, listed first so plain tool names must get past it; an HTTP endpoint that
accepts and never answers; a stdio server that completes the handshake and then never answers
`tools/list`; our test server; and our test server again writing a line with secrets to stderr.
The heartbeat timeout is shorter than the connect timeout, so an activity that waits without
heartbeating fails differently (heartbeat timeout) from one that waits and gives up (our message).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from executor.local_services import Proc, free_port, wait_for_port
from doubles.scripted_llm import ScriptedLLM
from tests.conftest import ARTIFACTS
from tests.support.stack import API_KEY, MCP_SERVER, ROOT, Stack, run_stack, wait_until

HUNG = ROOT / "tests" / "support" / "hung_mcp_server.py"
CONNECT_TIMEOUT = 10  # MCP_CONNECT_TIMEOUT of this stack
HEARTBEAT_TIMEOUT = 6  # shorter: waiting without heartbeats would fail the attempt first
TEMPORAL_KEY = "tk-test-" + uuid.uuid4().hex  # TEMPORAL_API_KEY of this stack (plaintext dev server)
NOISY_MARKER = "noisy-" + uuid.uuid4().hex[:8]
LOG = ARTIFACTS / "mcp-stack.log"


@pytest.fixture(scope="module")
def ms(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("mcp")
    hung_port = free_port()
    hung_log = tmp / "hung-starts.jsonl"
    python = sys.executable
    config = {"mcpServers": {
        "hung": {"command": python, "args": [str(HUNG), "--log", str(hung_log)]},
        "stdio": {"command": python, "args": [str(MCP_SERVER)], "env": {"MCP_CALL_LOG": str(tmp / "mcp-calls.jsonl")}},
        "hung_http": {"url": f"http://127.0.0.1:{hung_port}/mcp"},
        "mute_tools": {"command": python, "args": [str(HUNG), "--answer-initialize", "--log", str(hung_log)]},
        "noisy": {"command": python, "args": [str(MCP_SERVER), "--stderr-line", f"{NOISY_MARKER} temporal={TEMPORAL_KEY} llm={API_KEY}"]},
    }}
    (tmp / "mcp-hung.json").write_text(json.dumps(config))
    with open(LOG, "w") as log:
        hung_http = Proc("hung-http", [python, str(HUNG), "--http", "--port", str(hung_port), "--log", str(hung_log)], sink=log)
        try:
            wait_for_port(hung_port, proc=hung_http)
            yield from run_stack(
                tmp, log, llm,
                MCP_SERVERS="", MCP_CONFIG=str(tmp / "mcp-hung.json"), MCP_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
                ACTIVITY_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT), TOOL_MAX_ATTEMPTS="2",
                TEMPORAL_API_KEY=TEMPORAL_KEY, TEMPORAL_TLS="false",
            )
        finally:
            hung_http.stop()


def hung_starts(ms: Stack, mode: str | None = None) -> list[dict[str, Any]]:
    path = ms.tmp / "hung-starts.jsonl"
    starts = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [s for s in starts if mode is None or s["mode"] == mode]


def echo(tool: str, text: str) -> dict[str, Any]:
    return {"tool_name": tool, "tool_params": {"text": text}}


def worker_records(logger: str) -> list[dict[str, Any]]:
    """The worker's JSON log records of one logger, from this stack's log."""
    records = []
    for line in LOG.read_text(errors="replace").splitlines():
        if line.startswith("[worker] {"):
            record = json.loads(line.removeprefix("[worker] "))
            if record.get("logger") == logger:
                records.append(record)
    return records


def test_plain_name_is_found_past_a_hung_server_listed_first(ms: Stack) -> None:
    """`echo` lives on `stdio`; `hung`, listed first, never answers. The lookup gives up on it
    after MCP_CONNECT_TIMEOUT and goes on; while it stays unreachable, lookups try it last."""
    tag = uuid.uuid4().hex[:6]
    g1, _ = ms.submit_node(echo("echo", f"{tag}-1"))
    first = ms.wait_event(g1, timeout=60)
    assert first["type"] == "node.completed", first
    assert first["data"]["output"] == {"result": f"stdio: {tag}-1"}
    contacted = len(hung_starts(ms, "stdio"))
    g2, _ = ms.submit_node(echo("echo", f"{tag}-2"))
    second = ms.wait_event(g2, timeout=60)
    assert second["type"] == "node.completed" and second["data"]["output"] == {"result": f"stdio: {tag}-2"}
    assert len(hung_starts(ms, "stdio")) == contacted  # not waited on again within the minute


def test_servers_that_never_answer_fail_their_nodes_naming_them(ms: Stack) -> None:
    """Tool nodes on a silent stdio server, a silent HTTP endpoint and a server silent on
    `tools/list`, and an agent describing a tool of the silent one: each attempt gives up after
    MCP_CONNECT_TIMEOUT (heartbeating meanwhile), the sessions are retired (their processes
    stopped), and the node fails naming the server; a healthy server answers all along."""
    tag = uuid.uuid4().hex[:6]
    nodes = {
        "hung": ms.submit_node(echo("mcp__hung__echo", tag))[0],
        "hung_http": ms.submit_node(echo("mcp__hung_http__echo", tag))[0],
        "mute_tools": ms.submit_node(echo("mcp__mute_tools__echo", tag))[0],
    }
    agent, agent_node, _ = ms.submit_agent({"task": "say hi", "llm_config": {"model": "echo-x"}, "tools": ["mcp__hung__echo"]})
    wait_until(lambda: len(hung_starts(ms, "answer-initialize")) >= 1, timeout=30, message="mute_tools contacted")
    healthy, _ = ms.submit_node(echo("mcp__stdio__echo", tag))
    assert ms.wait_event(healthy, timeout=30)["data"]["output"] == {"result": f"stdio: {tag}"}
    assert not any(ms.events(g) for g in nodes.values())  # still waiting on the silent ones
    expected = {
        "hung": f"tool mcp__hung__echo: MCP server hung: no answer to the handshake within {CONNECT_TIMEOUT}s",
        "hung_http": f"tool mcp__hung_http__echo: MCP server hung_http: no answer to the handshake within {CONNECT_TIMEOUT}s",
        "mute_tools": f"tool mcp__mute_tools__echo: MCP server mute_tools: no answer to tools/list within {CONNECT_TIMEOUT}s",
    }
    for server, graph in nodes.items():
        event = ms.wait_event(graph, timeout=75)
        assert event["type"] == "node.failed", event
        assert event["data"]["error"] == expected[server]
    event = ms.wait_event(agent, agent_node, timeout=75)
    assert event["type"] == "node.failed"
    assert event["data"]["error"].endswith(f"MCP server hung: no answer to the handshake within {CONNECT_TIMEOUT}s"), event

    def all_stopped() -> bool:
        return all(not os.path.exists(f"/proc/{s['pid']}") for s in hung_starts(ms) if s["mode"] != "http")

    wait_until(all_stopped, timeout=30, message="the retired servers' processes stopped")
    assert len(hung_starts(ms, "answer-initialize")) >= 2  # a new session per attempt


def test_stdio_server_stderr_becomes_redacted_json_log_records(ms: Stack) -> None:
    graph, _ = ms.submit_node(echo("mcp__noisy__echo", "hi"))
    assert ms.wait_event(graph, timeout=60)["type"] == "node.completed"
    [record] = wait_until(lambda: [r for r in worker_records("mcp_server.noisy") if NOISY_MARKER in r["msg"]], message="stderr line logged")
    assert record["msg"] == f"{NOISY_MARKER} temporal=*** llm=***"
    assert record["mcp_server"] == "noisy" and record["level"] == "info"
    assert "workflow_id" not in record  # the server belongs to the pool, not to the node that started it
    text = LOG.read_text(errors="replace")
    assert TEMPORAL_KEY not in text and API_KEY not in text


@pytest.mark.parametrize(
    ("timeout", "interval"),
    [(None, 2.0), (timedelta(seconds=60), 10.0), (timedelta(seconds=20), 20 / 3), (timedelta(seconds=3), 1.0), (timedelta(seconds=1.5), 0.5)],
)
def test_heartbeats_come_at_least_three_times_per_heartbeat_timeout(timeout: timedelta | None, interval: float) -> None:
    """Three beats per heartbeat timeout however short it is, at most every 10 s."""
    from activities.heartbeat import beat_interval

    assert beat_interval(timeout) == pytest.approx(interval)
