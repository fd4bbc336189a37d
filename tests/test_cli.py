"""The CLI as a user runs it, against the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from doubles.scripted_llm import text, tool_use
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


def test_status_reports_reachability_streams_and_running_nodes(stack: Stack) -> None:
    done = cli(stack, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["temporal"] == "ok" and report["redis"] == "ok"
    assert set(report["streams"]) == {"executor.work", "dago:events:executor.work"}
    assert report["streams"]["executor.work"]["length"] >= 1 and "pending" in report["streams"]["executor.work"]
    assert isinstance(report["running_nodes"], int) and isinstance(report["dead_letters"], int)
    plain = cli(stack, "status")
    assert plain.returncode == 0 and "temporal      ok" in plain.stdout and "running nodes" in plain.stdout


def test_status_exits_non_zero_when_redis_is_unreachable(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "executor", "status", "--json"], env={**stack.env(), "REDIS_ADDR": "127.0.0.1:1"},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and json.loads(done.stdout)["redis"].startswith("unreachable")


def test_tail_follows_result_events(stack: Stack) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "executor", "tail", "--count", "1"],
        env=stack.env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # tail starts at the end of the streams: submit once it says it follows them, not after a guess
    assert follower.stderr.readline().startswith("following dago:events:node.completed")
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "6*7"}})
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0
    assert f"node.completed {graph}/{node} output: 42" in out


def test_show_and_cancel_a_running_node(stack: Stack) -> None:
    gate = stack.gate(f"gate-{uuid.uuid4().hex[:6]}")
    graph, node, wid = stack.submit_agent({"tool_name": "mcp__http__gate", "tool_params": {"name": gate.name}})
    wait_until(lambda: [c for c in stack.mcp_calls("gate_started") if c["name"] == gate.name], message="in flight")
    shown = json.loads(cli(stack, "show", wid).stdout)
    assert shown["status"] == "RUNNING" and shown["progress"]["mode"] == "tool" and shown["summary"] == f"graph {graph} · node {node} · mode tool"
    done = cli(stack, "cancel", wid)
    assert done.returncode == 0
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.failed" and event["data"]["error"].startswith("cancelled by request")
    gate.unlink()
    closed = json.loads(cli(stack, "show", wid).stdout)
    assert closed["status"] == "CANCELED"


def test_show_a_completed_node_prints_its_outcome(stack: Stack) -> None:
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "2**5"}})
    wid = stack.wait_event(graph, node)["data"]["workflow_id"]
    shown = json.loads(cli(stack, "show", wid).stdout)
    assert shown["status"] == "COMPLETED" and shown["outcome"]["output"] == 32 and shown["outcome"]["status"] == "completed"


def test_dead_letters_listed_and_requeued_after_a_fix(stack: Stack) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    bad = {"graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "1+1"}}, "dependencies": "not-a-list"}
    stack.submit(bad)
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.failed" and "dependencies" in event["data"]["error"]
    listed = cli(stack, "dead-letters")
    [line] = [l for l in listed.stdout.splitlines() if "dependencies" in l and l.split()[0] in {d for d in _dead_ids(stack, graph)}]
    dead_id = line.split()[0]
    # the fix: the producer corrects the entry in place (here: by hand), then it is requeued
    fixed = {**bad, "dependencies": []}
    stack.redis.xadd("executor.work.dead", {"stream": "executor.work", "data": json.dumps(fixed), "reason": "fixed by hand"})
    stack.redis.xdel("executor.work.dead", dead_id)
    fixed_id = _dead_ids(stack, graph)[0]
    done = cli(stack, "dead-letters", "--requeue", fixed_id)
    assert done.returncode == 0 and f"requeued {fixed_id} to executor.work" in done.stdout
    wait_until(lambda: any(e["type"] == "node.completed" for e in stack.events(graph, "n1")), message="completed after requeue")
    assert fixed_id not in _dead_ids(stack, graph)
    assert cli(stack, "dead-letters", "--requeue", "0-1").returncode == 1


def test_requeued_dead_letter_reports_again(stack: Stack) -> None:
    """A work item with an envelope id keeps its workflow id: its dead-letter `node.failed` reserved
    that workflow's emitted marker, and a requeue must clear it or the rerun would report nothing."""
    graph, event_id = f"g-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    item = {"id": event_id, "graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "6*7"}}}
    # as the ingress leaves an entry it gave up on: its node.failed reserved the marker
    stack.redis.set(f"executor:emitted:node:{graph}:n1:{event_id}", "dago:events:node.failed")
    dead_id = stack.redis.xadd("executor.work.dead", {"stream": "executor.work", "data": json.dumps(item), "reason": "not started"})
    done = cli(stack, "dead-letters", "--requeue", dead_id)
    assert done.returncode == 0, done.stdout + done.stderr
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.completed" and event["data"]["output"] == 42


def _dead_ids(stack: Stack, graph: str) -> list[str]:
    import redis

    raw = redis.Redis(port=stack.redis_port).xrange("executor.work.dead")  # may hold bytes that are not UTF-8
    return [eid.decode() for eid, f in raw if graph.encode() in f.get(b"data", b"")]


def test_approve_or_reject_on_a_finished_node_says_so_and_exits_non_zero(stack: Stack, llm) -> None:
    model = f"claude-cli-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "5*5"})), text("never asked"))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"], "require_approval": ["calculate"]})
    listed = wait_until(lambda: (r := cli(stack, "approvals", wid)).returncode == 0 and "calculate" in r.stdout and r, message="listed")
    call_id = listed.stdout.split()[0]
    assert cli(stack, "cancel", wid).returncode == 0
    assert stack.wait_event(graph, node)["type"] == "node.failed"
    for verb in ("approve", "reject"):
        late = cli(stack, verb, wid, call_id)
        assert late.returncode == 1, late.stdout + late.stderr
        assert late.stdout.strip() == f"node {wid} has already finished (failed): nothing to approve"
    after = cli(stack, "approvals", wid)
    assert after.returncode == 0 and after.stdout.strip() == f"node {wid} has already finished (failed): no tool call is waiting for approval"
    # a node that completed says so too
    done, done_node, done_wid = stack.submit_agent({"tool_name": "calculate", "tool_params": {"expression": "1+1"}})
    assert stack.wait_event(done, done_node)["type"] == "node.completed"
    late = cli(stack, "approve", done_wid, "toolu_any")
    assert late.returncode == 1 and late.stdout.strip() == f"node {done_wid} has already finished (completed): nothing to approve"
