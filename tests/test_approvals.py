"""Approvals with an identity: who decided a `require_approval` call is recorded (the update's
argument, the history, the result event, `executor show`), and `approvers` / `tool_approvers` /
the worker's `APPROVERS` refuse anyone else in the update's validator.

End to end on the shared real stack, through the CLI as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from core.errors import ContractError
from core.node_config import parse_node_config
from core.step_io import ApprovalDecision
from doubles.scripted_llm import text, tool_use
from tests.support.stack import ROOT, Stack, wait_until


def cli(stack: Stack, *args: str, **env: str | None) -> subprocess.CompletedProcess:
    """`python -m executor …` with the stack's env; a None value removes that variable."""
    environ = {k: v for k, v in {**stack.env(), **env}.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "executor", *args], env=environ, cwd=ROOT, capture_output=True, text=True, timeout=60)


def agent(model: str, tools: list[str], **extra: object) -> dict:
    return {"llm_config": {"model": model, "max_tokens": 1024}, "tools": tools, "task": "Work it out.", **extra}


def pending(stack: Stack, wid: str, count: int) -> dict[str, dict]:
    """The calls waiting for approval, by tool, once `count` of them wait."""
    waiting = wait_until(lambda: (p := stack.query(wid, "pending_approvals")) and len(p) == count and p, timeout=60, message=f"{count} calls waiting")
    return {call["tool"]: call for call in waiting}


def update_events(stack: Stack, wid: str) -> list[tuple[str, ApprovalDecision]]:
    """Each accepted `decide` update in the history: (the identity the server recorded for its
    caller, the decision as sent), decoded with the stack's own data converter."""

    async def read(client) -> list[tuple[str, ApprovalDecision]]:
        history = await client.get_workflow_handle(wid).fetch_history()
        found = []
        for event in history.events:
            if event.HasField("workflow_execution_update_accepted_event_attributes"):
                request = event.workflow_execution_update_accepted_event_attributes.accepted_request
                [decision] = await client.data_converter.decode(list(request.input.args.payloads), [ApprovalDecision])
                found.append((request.meta.identity, decision))
        return found

    return stack.temporal(read)


def test_who_decided_is_in_the_history_the_result_event_and_show(stack: Stack, llm) -> None:
    model = f"claude-approve-{uuid.uuid4().hex[:6]}"
    yes, no = f"yes-{uuid.uuid4().hex[:6]}", f"no-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("echo", {"text": yes})), tool_use(("echo", {"text": no})), text("done"))
    graph, node, wid = stack.submit_agent(agent(model, ["echo"], require_approval=["echo"]))

    first = pending(stack, wid, 1)["echo"]
    approved = cli(stack, "approve", wid, first["call_id"], "--by", "alice", "--reason", "looks fine")
    assert approved.returncode == 0 and approved.stdout.strip() == f"{first['call_id']}: approved", approved.stdout + approved.stderr
    second = wait_until(lambda: (p := stack.query(wid, "pending_approvals")) and p[0]["call_id"] != first["call_id"] and p[0], timeout=60, message="the second call")
    # No `--by` and no $USER: the approver recorded is the CLI's Temporal client identity.
    rejected = cli(stack, "reject", wid, second["call_id"], "--reason", "not that one", USER=None)
    assert rejected.returncode == 0 and rejected.stdout.strip() == f"{second['call_id']}: rejected", rejected.stdout + rejected.stderr

    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed", event
    [(identity_1, sent_1), (identity_2, sent_2)] = update_events(stack, wid)
    # The server's record of each caller's identity is the one the decision carries.
    assert identity_1 and sent_1.identity == identity_1 and sent_1.by == "alice"
    assert identity_2 and sent_2.identity == identity_2 and sent_2.by is None and identity_2 != identity_1
    approvals = event["data"]["approvals"]
    assert [{k: a[k] for k in ("call_id", "tool", "iteration", "approved", "approver", "identity", "reason")} for a in approvals] == [
        {"call_id": first["call_id"], "tool": "echo", "iteration": 1, "approved": True, "approver": "alice", "identity": identity_1, "reason": "looks fine"},
        {"call_id": second["call_id"], "tool": "echo", "iteration": 2, "approved": False, "approver": identity_2, "identity": identity_2, "reason": "not that one"},
    ]
    assert all(a["decided_at"].endswith("Z") or "+00:00" in a["decided_at"] for a in approvals)
    assert event["data"]["output"]["tool_calls"] == [
        {"name": "echo", "input": {"text": yes}, "is_error": False},
        {"name": "echo", "input": {"text": no}, "is_error": True},
    ]

    shown = cli(stack, "show", wid)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["outcome"]["details"]["approvals"] == approvals


def test_approvers_refuse_anyone_else_and_leave_the_call_waiting(stack: Stack, llm) -> None:
    model = f"claude-approvers-{uuid.uuid4().hex[:6]}"
    tag = f"guarded-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("echo", {"text": tag}), ("calculate", {"expression": "6*7"})), text("done"))
    config = agent(
        model, ["echo", "calculate"], require_approval=["echo", "calculate"], approvers=["alice"], tool_approvers={"echo": ["bob"]}
    )
    graph, node, wid = stack.submit_agent(config)
    calls = pending(stack, wid, 2)
    echo, calc = calls["echo"]["call_id"], calls["calculate"]["call_id"]

    refused = cli(stack, "approve", wid, echo, "--by", "alice")  # alice may decide the node's calls, but not echo's
    assert refused.returncode == 1
    assert refused.stdout.strip() == "error: 'alice' may not decide calls of echo (approvers: bob)"
    unnamed = cli(stack, "approve", wid, calc, "--by", "mallory")
    assert unnamed.returncode == 1
    assert unnamed.stdout.strip() == "error: 'mallory' may not decide calls of calculate (approvers: alice)"
    # Refused in the validator: nothing in the history, both calls still waiting, no tool ran.
    assert update_events(stack, wid) == []
    assert set(pending(stack, wid, 2)) == {"echo", "calculate"}
    assert not [c for c in stack.mcp_calls("echo") if c.get("text") == tag]

    for call_id, approver in ((echo, "bob"), (calc, "alice")):  # the listed approvers (straight to Temporal: the CLI's path is above)
        decision = ApprovalDecision(call_id=call_id, approve=True, by=approver)
        assert stack.temporal(lambda c: c.get_workflow_handle(wid).execute_update("decide", decision)) == "approved"
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed", event
    assert [(a["tool"], a["approver"], a["approved"]) for a in event["data"]["approvals"]] == [("echo", "bob", True), ("calculate", "alice", True)]
    assert len([c for c in stack.mcp_calls("echo") if c.get("text") == tag]) == 1


def test_worker_approvers_apply_when_a_node_names_none(stack: Stack) -> None:
    """The resolve step fills in the worker's APPROVERS (recorded in history with its result, so
    the validator reads it deterministically); a node's own list wins."""
    from activities.resolve import ResolveActivities
    from adapters import redis_client
    from adapters.settings import Settings
    from core.work_item import parse_work_entry

    settings = Settings(redis_addr=f"127.0.0.1:{stack.redis_port}", approvers="carol, dave")  # type: ignore[arg-type]

    async def resolve(config: dict) -> list[str]:
        entry = {b"data": json.dumps({"graph_id": "g-approvers", "node_id": "n1", "config": config}).encode()}
        item = parse_work_entry(entry, stream="executor.work", entry_id="1-0", max_bytes=settings.max_entry_bytes)
        client = redis_client.connect(settings)
        try:
            resolved = await ResolveActivities(client, settings).resolve_node(item)
        finally:
            await client.aclose()
        return resolved.node.approvers  # type: ignore[union-attr]

    assert settings.approvers == ["carol", "dave"]
    assert asyncio.run(resolve(agent("m", ["echo"], require_approval=["echo"]))) == ["carol", "dave"]
    assert asyncio.run(resolve(agent("m", ["echo"], require_approval=["echo"], approvers=["erin"]))) == ["erin"]
    assert asyncio.run(resolve(agent("m", ["echo"]))) == []  # nothing to approve: nothing filled in


def test_tool_approvers_must_name_a_tool_under_approval() -> None:
    with pytest.raises(ContractError) as refused:
        parse_node_config(agent("m", ["echo", "calculate"], require_approval=["echo"], tool_approvers={"calculate": ["bob"]}))
    assert str(refused.value) == "node config: tool_approvers names tools not in require_approval: calculate"
    node = parse_node_config(agent("m", ["echo", "calculate"], require_approval=["echo", "calculate"], approvers=["alice"], tool_approvers={"echo": ["bob"]}))
    assert node.approvers_of("echo") == ["bob"] and node.approvers_of("calculate") == ["alice"]  # type: ignore[union-attr]


@pytest.mark.asyncio(loop_scope="module")
async def test_decisions_survive_continue_as_new_into_the_one_result(env) -> None:
    """Under the time-skipping server with stand-in steps: a decision made in the first run is
    carried (AgentState) into the run that emits."""
    from tests.support.stub_activities import StubSteps, echo, eventually, resolved, run_node
    from tests.support.stub_activities import text as says
    from tests.support.stub_activities import tool_use as asks

    turns = 8
    steps = StubSteps(
        resolved(agent("m", ["book", "weather"], require_approval=["book"], max_iterations=20), continue_as_new_events=50),
        replies=[asks(("book", {"flight": "SK123"}))] + [asks(("weather", {"city": f"c{n}"}), turn=n) for n in range(2, turns + 2)] + [says("done")],
        tools={"book": echo, "weather": echo},
    )

    async def approve(handle) -> None:
        [waiting] = await eventually(lambda: handle.query("pending_approvals"), "the booking waiting")
        decision = ApprovalDecision(call_id=waiting["call_id"], approve=True, reason="budget ok", by="carol", identity="ops-console")
        assert await handle.execute_update("decide", decision) == "approved"

    run = await run_node(env, steps, during=approve)

    outcome = run.outcome
    assert outcome.status == "completed" and outcome.details["runs"] > 1 and outcome.run_id != run.handle.first_execution_run_id
    [record] = outcome.details["approvals"]
    assert {k: record[k] for k in ("tool", "iteration", "approved", "approver", "identity", "reason")} == {
        "tool": "book", "iteration": 1, "approved": True, "approver": "carol", "identity": "ops-console", "reason": "budget ok",
    }

