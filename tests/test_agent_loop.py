"""The agent loop (workflows/agent.py) driven through NodeWorkflow under the time-skipping server.

Stand-in steps (tests/support/stub_activities.py) script the model's turns and answer the tools,
and record every request: so these tests read exactly what the loop sent the model after each
turn (the tool_result blocks), which tools ran, and the one outcome it emitted. End-to-end agent
runs against the scripted Messages API and real MCP servers stay in test_agent.py.
"""

from __future__ import annotations

import json

from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.step_io import ApprovalDecision, LlmReply, ToolCall, ToolResult
from tests.support.history import local_steps
from tests.support.stub_activities import (
    StubSteps,
    echo,
    eventually,
    resolved,
    run_node,
    text,
    tool_use,
    within,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("step_shape")]


def agent(tools: list[str], **config: Any) -> dict[str, Any]:
    return {"llm_config": {}, "tools": tools, "task": "Plan the trip.", **config}


def weather(call: ToolCall) -> ToolResult:
    return ToolResult(tool=call.tool, server="stub", output=f"sunny in {call.arguments['city']}")


def tool_results(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a user message of the transcript."""
    assert message["role"] == "user" and isinstance(message["content"], list), message
    return [block for block in message["content"] if block["type"] == "tool_result"]


async def test_a_tool_answer_is_fed_back_to_the_model_as_its_tool_result(env: WorkflowEnvironment) -> None:
    asks = tool_use(("weather", {"city": "Oslo"}))
    steps = StubSteps(resolved(agent(["weather"])), replies=[asks, text("Go to Oslo.")], tools={"weather": weather})

    run = await run_node(env, steps)

    assert steps.of("call_tool") == [ToolCall(tool="weather", arguments={"city": "Oslo"})]
    first, second = steps.of("call_llm")
    assert first.messages == [{"role": "user", "content": "Plan the trip."}]
    assert second.messages[:2] == first.messages + [{"role": "assistant", "content": asks.content}]
    assert len(second.messages) == 3
    assert tool_results(second.messages[2]) == [{"type": "tool_result", "tool_use_id": "t1-0", "content": "sunny in Oslo"}]
    outcome = run.outcome
    assert (outcome.status, outcome.output["result"], outcome.output["iterations"]) == ("completed", "Go to Oslo.", 2)
    assert outcome.output["tool_calls"] == [{"name": "weather", "input": {"city": "Oslo"}, "is_error": False}]
    assert outcome.output["usage"] == {"input_tokens": 20, "output_tokens": 8}


async def test_two_tool_calls_in_one_turn_both_run_side_by_side(env: WorkflowEnvironment) -> None:
    # "weather" answers only once "flights" has started: one at a time, the node would hang.
    steps = StubSteps(resolved(agent(["weather", "flights"])), replies=[tool_use(("weather", {"city": "Oslo"}), ("flights", {"to": "OSL"})), text("Booked.")])

    async def weather_once_flights_run(call: ToolCall) -> ToolResult:
        await within(steps.happened("tool flights").wait(), "the second tool call, while the first one runs")
        return weather(call)

    steps.tools = {"weather": weather_once_flights_run, "flights": echo}

    run = await run_node(env, steps)

    assert sorted(steps.tools_called()) == ["flights", "weather"]
    answers = tool_results(steps.of("call_llm")[1].messages[-1])
    assert answers == [
        {"type": "tool_result", "tool_use_id": "t1-0", "content": "sunny in Oslo"},
        {"type": "tool_result", "tool_use_id": "t1-1", "content": '{"echo": {"to": "OSL"}}'},
    ]
    assert (run.outcome.status, run.outcome.output["result"]) == ("completed", "Booked.")


async def test_a_tool_outside_the_nodes_list_is_refused_without_running(env: WorkflowEnvironment) -> None:
    steps = StubSteps(resolved(agent(["weather"])), replies=[tool_use(("delete_files", {"path": "/"})), text("I cannot do that.")], tools={"weather": weather})

    run = await run_node(env, steps)

    assert steps.tools_called() == []
    [refusal] = tool_results(steps.of("call_llm")[1].messages[-1])
    assert refusal == {"type": "tool_result", "tool_use_id": "t1-0", "content": "tool 'delete_files' is not available to this node", "is_error": True}
    assert run.outcome.status == "completed"
    assert run.outcome.output["tool_calls"] == [{"name": "delete_files", "input": {"path": "/"}, "is_error": True}]


async def approve_or_reject(steps: StubSteps, handle: WorkflowHandle, approve: bool, reason: str | None = None) -> None:
    """Wait until the call waits for approval (query), check the tool has not run, decide (update)."""
    [waiting] = await eventually(lambda: handle.query("pending_approvals"), "a call waiting for approval")
    assert (waiting["tool"], waiting["call_id"], waiting["input"]) == ("book", "t1-0", {"flight": "SK123"})
    assert steps.tools_called() == []
    answer = await handle.execute_update("decide", ApprovalDecision(call_id=waiting["call_id"], approve=approve, reason=reason, by="tester"))
    assert answer == ("approved" if approve else "rejected")
    assert await handle.query("pending_approvals") == []


async def test_an_approved_call_runs_after_the_decision(env: WorkflowEnvironment) -> None:
    steps = StubSteps(
        resolved(agent(["book"], require_approval=["book"])),
        replies=[tool_use(("book", {"flight": "SK123"})), text("Booked SK123.")],
        tools={"book": echo},
    )

    run = await run_node(env, steps, during=lambda handle: approve_or_reject(steps, handle, approve=True))

    assert steps.of("call_tool") == [ToolCall(tool="book", arguments={"flight": "SK123"})]
    [answer] = tool_results(steps.of("call_llm")[1].messages[-1])
    assert answer == {"type": "tool_result", "tool_use_id": "t1-0", "content": '{"echo": {"flight": "SK123"}}'}
    assert (run.outcome.status, run.outcome.output["result"]) == ("completed", "Booked SK123.")


async def test_a_rejected_call_never_runs_and_the_model_is_told_why(env: WorkflowEnvironment) -> None:
    steps = StubSteps(
        resolved(agent(["book"], require_approval=["book"])),
        replies=[tool_use(("book", {"flight": "SK123"})), text("I did not book it.")],
        tools={"book": echo},
    )

    run = await run_node(env, steps, during=lambda handle: approve_or_reject(steps, handle, approve=False, reason="too expensive"))

    assert steps.tools_called() == []
    [answer] = tool_results(steps.of("call_llm")[1].messages[-1])
    assert answer == {"type": "tool_result", "tool_use_id": "t1-0", "content": "a human rejected this call of book: too expensive", "is_error": True}
    assert (run.outcome.status, run.outcome.output["result"]) == ("completed", "I did not book it.")


async def test_max_iterations_reached_fails_the_node_naming_it(env: WorkflowEnvironment) -> None:
    steps = StubSteps(
        resolved(agent(["weather"], max_iterations=2)),
        replies=[tool_use(("weather", {"city": "Oslo"}), turn=1), tool_use(("weather", {"city": "Bergen"}), turn=2), text("never asked for")],
        tools={"weather": weather},
    )

    run = await run_node(env, steps)

    assert len(steps.of("call_llm")) == 2 and steps.tools_called() == ["weather", "weather"]
    outcome = run.outcome
    assert (outcome.status, outcome.error) == ("failed", "agent reached max_iterations (2) without finishing")
    assert outcome.details["iterations"] == 2
    assert run.status == WorkflowExecutionStatus.COMPLETED


async def test_a_long_loop_continues_as_new_with_its_transcript_and_emits_once(env: WorkflowEnvironment) -> None:
    turns = 8
    steps = StubSteps(
        resolved(agent(["weather"], max_iterations=20), continue_as_new_events=50),
        replies=[tool_use(("weather", {"city": f"city-{n}"}), turn=n) for n in range(1, turns + 1)] + [text("Seen them all.")],
        tools={"weather": weather},
    )

    run = await run_node(env, steps)

    outcome = run.outcome  # exactly one emit, from the last run
    assert (outcome.status, outcome.output["result"], outcome.output["iterations"]) == ("completed", "Seen them all.", turns + 1)
    assert outcome.details["runs"] > 1
    assert outcome.run_id != run.handle.first_execution_run_id  # emitted by a later run
    assert [name for name, _ in steps.calls].count("resolve_node") == 1  # the carry keeps the resolved node
    assert len(steps.of("describe_tools")) == 1
    # every model call saw the whole transcript so far, across runs: task, then a turn and its answers each
    assert [len(request.messages) for request in steps.of("call_llm")] == [1 + 2 * n for n in range(turns + 1)]
    last = steps.of("call_llm")[-1].messages
    assert [tool_results(last[2 * n])[0]["content"] for n in range(1, turns + 1)] == [f"sunny in city-{n}" for n in range(1, turns + 1)]
    assert len(outcome.output["tool_calls"]) == turns
    assert run.status == WorkflowExecutionStatus.COMPLETED


async def test_a_tool_use_cut_at_max_tokens_never_runs_the_tool(env: WorkflowEnvironment) -> None:
    steps = StubSteps(
        resolved(agent(["book"], llm_config={"max_tokens": 50})),
        replies=[tool_use(("book", {"flight": "SK1"}), stop_reason="max_tokens")],
        tools={"book": echo},
    )

    run = await run_node(env, steps)

    assert steps.tools_called() == []
    outcome = run.outcome
    assert outcome.status == "failed"
    assert outcome.error == "the model's turn was cut at max_tokens (50) in iteration 1 while asking for book: its input may be truncated, so no tool was called"


async def test_a_token_budget_ends_the_loop_counting_every_run_before_the_next_tool(env: WorkflowEnvironment) -> None:
    # Each turn uses 13 tokens; the loop continues as new every few turns, so the budget is only
    # met in a later run, and must count the earlier runs' tokens too.
    steps = StubSteps(
        resolved(agent(["weather"], max_iterations=20, max_total_tokens=60), continue_as_new_events=50),
        replies=[tool_use(("weather", {"city": f"city-{n}"}), turn=n) for n in range(1, 9)] + [text("never reached")],
        tools={"weather": weather},
    )

    run = await run_node(env, steps)

    outcome = run.outcome
    assert (outcome.status, outcome.error) == ("failed", "budget of 60 tokens exceeded after 5 iterations (65 tokens used)")
    assert outcome.run_id != run.handle.first_execution_run_id  # the budget was met in a later run
    assert outcome.details["usage"] == {"input_tokens": 50, "output_tokens": 15}
    assert len(steps.of("call_llm")) == 5 and len(steps.tools_called()) == 4  # the fifth turn's tool never ran


async def test_a_cost_budget_ends_the_loop_once_spent(env: WorkflowEnvironment) -> None:
    def priced(turn: int) -> LlmReply:
        reply = tool_use(("weather", {"city": f"city-{turn}"}), turn=turn)
        return reply.model_copy(update={"usage": reply.usage.model_copy(update={"cost_usd": 0.01})})

    steps = StubSteps(
        resolved(agent(["weather"], max_cost_usd=0.025)),
        replies=[priced(n) for n in range(1, 6)],
        tools={"weather": weather},
    )

    run = await run_node(env, steps)

    assert (run.outcome.status, run.outcome.error) == ("failed", "budget of $0.025 exceeded after 3 iterations ($0.030000 spent)")
    assert len(steps.tools_called()) == 2


async def test_a_loop_recorded_with_a_local_emit_continues_with_a_regular_one(env: WorkflowEnvironment) -> None:
    """Before 0.2, LOCAL_STEPS put the emit in a local activity too (NodeInput.local_steps). Such a
    loop replays as it was recorded, but its continued runs take today's steps: reads local, the
    emit regular (its outcome in the history before the event is written)."""
    turns = 8
    steps = StubSteps(
        resolved(agent(["weather"], max_iterations=20), continue_as_new_events=50),
        replies=[tool_use(("weather", {"city": f"city-{n}"}), turn=n) for n in range(1, turns + 1)] + [text("Seen them all.")],
        tools={"weather": weather},
    )

    run = await run_node(env, steps, local_steps=True, local_reads=False)  # an input recorded before 0.2

    assert run.outcome.status == "completed" and run.outcome.details["runs"] > 1
    first = await env.client.get_workflow_handle(run.handle.id, run_id=run.handle.first_execution_run_id).fetch_history()
    last = await env.client.get_workflow_handle(run.handle.id, run_id=run.outcome.run_id).fetch_history()
    continued = last.events[0].workflow_execution_started_event_attributes.input
    assert {"local_steps": False, "local_reads": True}.items() <= json.loads(continued.payloads[0].data).items()
    assert [m["activity_type"] for m in local_steps(first)] == ["resolve_node"]  # recorded local
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in last.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert scheduled[-1] == "emit_result"  # a regular activity in the run that emits
