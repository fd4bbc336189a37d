"""The CLI as a user runs it, against the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from executor.scripted_llm import text, tool_use
from tests.support.stack import ROOT, Stack, wait_until


def cli(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "executor", *args], env=stack.env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_submit_prints_the_completed_event_and_exits_zero(stack: Stack) -> None:
    done = cli(stack, "submit", '{"config": {"tool_name": "calculate", "tool_params": {"expression": "2*(3+4)"}}}')
    assert done.returncode == 0, done.stderr
    event = json.loads(done.stdout)
    assert event["type"] == "node.completed" and event["data"]["output"] == 14


def test_submit_of_a_failing_node_exits_non_zero_with_the_reason(stack: Stack, tmp_path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"graph_id": f"g-{uuid.uuid4().hex[:6]}", "node_id": "x", "config": {"llm_config": {"prompt": "{{nope}}"}}}))
    done = cli(stack, "submit", str(item))
    assert done.returncode == 1
    assert json.loads(done.stdout)["data"]["error"] == "unknown template variable: nope"


def test_bad_configuration_is_one_line_not_a_traceback(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "executor", "worker"], env={**stack.env(), "MAX_ITERATIONS": "-3"}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: configuration: max_iterations: Input should be greater than or equal to 1"


def test_approvals_listed_and_decided_from_the_cli(stack: Stack, llm) -> None:
    model = f"claude-cli-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "5*5"})), text("25"))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"], "require_approval": ["calculate"]})
    listed = wait_until(lambda: (r := cli(stack, "approvals", wid)).returncode == 0 and "calculate" in r.stdout and r, message="listed")
    call_id = listed.stdout.split()[0]
    assert '{"expression": "5*5"}' in listed.stdout
    wrong = cli(stack, "approve", wid, "toolu_nope")
    assert wrong.returncode == 1 and "no tool call 'toolu_nope' is waiting" in wrong.stdout
    decided = cli(stack, "approve", wid, call_id)
    assert decided.returncode == 0 and decided.stdout.strip() == f"{call_id}: approved"
    assert stack.wait_event(graph, node)["data"]["output"]["result"] == "25"
