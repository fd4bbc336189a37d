"""NodeWorkflow (workflows/node.py) under Temporal's time-skipping test server, with stand-in steps.

The fast tier: the real workflow code, every step a recorded stand-in registered under the real
activity name (tests/support/stub_activities.py), one test server for the module. Each mode ends
in exactly one emit_result call with the right NodeOutcome, and so does each way a node fails:
a config error, the node deadline, a cancellation. The end-to-end runs (test_pipeline.py and
others) stay the proof that the pieces work together; these pin the workflow's branches in seconds.
The deadline and cancellation tests are marked `interpreters`: asyncio's cancellation changed in
Python 3.12, so `make test` runs them again on the newest supported Python.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.step_io import LlmRequest, ToolCall
from tests.support.stub_activities import (
    BLOCK,
    DOWN,
    MODEL,
    StubSteps,
    echo,
    resolved,
    run_node,
    text,
    tool_use,
    wait_for_event,
    within,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("step_shape")]


# -- each mode ends in one emit with its outcome -------------------------------------------------
async def test_tool_node_runs_its_tool_and_emits_completed(env: WorkflowEnvironment) -> None:
    steps = StubSteps(resolved({"tool_name": "lookup", "tool_params": {"city": "Oslo"}}), tools={"lookup": echo})

    run = await run_node(env, steps)

    assert [name for name, _ in steps.calls] == ["resolve_node", "call_tool", "emit_result"]
    assert steps.of("call_tool") == [ToolCall(tool="lookup", arguments={"city": "Oslo"})]
    outcome = run.outcome
    assert (outcome.status, outcome.mode, outcome.error) == ("completed", "tool", None)
    assert outcome.output == {"echo": {"city": "Oslo"}}
    assert outcome.details == {"tool": "lookup", "server": "stub"}
    assert outcome.workflow_id == run.handle.id and outcome.node_id == "n1"
    assert run.returned == outcome and run.status == WorkflowExecutionStatus.COMPLETED


async def test_tool_error_result_fails_the_node_with_the_tools_message(env: WorkflowEnvironment) -> None:
    steps = StubSteps(resolved({"tool_name": "lookup"}), tools={"lookup": lambda call: echo(call).model_copy(update={"is_error": True, "output": "no such city"})})

    run = await run_node(env, steps)

    assert (run.outcome.status, run.outcome.error) == ("failed", "tool lookup: no such city")


async def test_llm_node_makes_one_model_call_and_emits_its_text(env: WorkflowEnvironment) -> None:
    config = {"llm_config": {"prompt": "Summarise the news", "system": "Be brief.", "temperature": 0.2, "max_tokens": 300}}
    steps = StubSteps(resolved(config), replies=[text("All quiet.")])

    run = await run_node(env, steps)

    assert steps.of("call_llm") == [
        LlmRequest(model=MODEL, system="Be brief.", messages=[{"role": "user", "content": "Summarise the news"}], temperature=0.2, max_tokens=300)
    ]
    assert [name for name, _ in steps.calls] == ["resolve_node", "call_llm", "emit_result"]
    outcome = run.outcome
    assert (outcome.status, outcome.mode) == ("completed", "llm")
    assert outcome.output == {"content": "All quiet.", "usage": {"input_tokens": 10, "output_tokens": 5}}
    assert outcome.details == {"model": MODEL, "stop_reason": "end_turn"}


async def test_agent_node_describes_its_tools_loops_and_emits_the_answer(env: WorkflowEnvironment) -> None:
    config = {"llm_config": {}, "tools": ["lookup"], "task": "Where is it sunny?"}
    steps = StubSteps(resolved(config), replies=[tool_use(("lookup", {"city": "Oslo"})), text("Oslo is sunny.")], tools={"lookup": echo})

    run = await run_node(env, steps)

    assert [name for name, _ in steps.calls] == ["resolve_node", "describe_tools", "call_llm", "call_tool", "call_llm", "emit_result"]
    assert steps.of("describe_tools") == [["lookup"]]
    first = steps.of("call_llm")[0]
    assert first.tools == [{"name": "lookup", "description": "stub tool lookup", "input_schema": {"type": "object"}}]
    assert first.messages == [{"role": "user", "content": "Where is it sunny?"}]
    outcome = run.outcome
    assert (outcome.status, outcome.mode) == ("completed", "agent")
    assert outcome.output["result"] == "Oslo is sunny."
    assert outcome.output["iterations"] == 2
    assert outcome.details == {"model": MODEL, "runs": 1}


# -- failures -------------------------------------------------------------------------------------
async def test_config_error_from_resolve_fails_with_its_message_and_no_retry(env: WorkflowEnvironment) -> None:
    message = "node config: llm_config.prompt: unknown template variable 'missing'"
    steps = StubSteps(config_error=message)

    run = await run_node(env, steps)

    assert [name for name, _ in steps.calls] == ["resolve_node", "emit_result"]  # non-retryable: one attempt
    outcome = run.outcome
    assert (outcome.status, outcome.error, outcome.mode) == ("failed", message, None)
    assert run.status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.interpreters
async def test_node_deadline_fails_the_node_during_its_tool(env: WorkflowEnvironment) -> None:
    # The tool's server never comes back: retries go on (unlimited attempts) until the node's
    # 60 s deadline, which the test server reaches by skipping the waits between attempts.
    steps = StubSteps(resolved({"tool_name": "lookup", "timeout": 60}, tool_attempts=0), tools={"lookup": DOWN})

    run = await run_node(env, steps)

    outcome = run.outcome
    assert (outcome.status, outcome.error) == ("failed", "node deadline of 60s exceeded during tool lookup")
    assert len(steps.of("call_tool")) > 1  # kept retrying until the deadline
    assert outcome.finished_at - outcome.started_at >= timedelta(seconds=60)  # workflow time, skipped
    assert run.status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.interpreters
async def test_cancellation_during_a_step_emits_failed_and_ends_cancelled(env: WorkflowEnvironment) -> None:
    steps = StubSteps(resolved({"tool_name": "lookup"}), tools={"lookup": BLOCK})
    emit_gate = steps.hold_emit()

    async def cancel_while_the_tool_runs(handle: WorkflowHandle) -> None:
        await within(steps.happened("tool lookup").wait(), "the tool call")
        await handle.cancel()
        await within(steps.happened("emit_result").wait(), "the emit after the cancellation")
        # the cancelled call reports its cancellation before the workflow closes (see the helper's docstring)
        await wait_for_event(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED)
        emit_gate.set()

    run = await run_node(env, steps, during=cancel_while_the_tool_runs)

    assert steps.happened("tool lookup cancelled").is_set()  # the step in flight was cancelled, not abandoned
    outcome = run.outcome
    assert (outcome.status, outcome.error) == ("failed", "cancelled by request (Temporal UI or CLI) during tool lookup")
    assert run.status == WorkflowExecutionStatus.CANCELED and run.returned is None


@pytest.mark.interpreters
async def test_cancellation_while_emitting_still_emits_the_decided_outcome_once(env: WorkflowEnvironment) -> None:
    steps = StubSteps(resolved({"tool_name": "lookup", "tool_params": {"city": "Oslo"}}), tools={"lookup": echo})
    emit_gate = steps.hold_emit()

    async def cancel_while_emitting(handle: WorkflowHandle) -> None:
        await within(steps.happened("emit_result").wait(), "the emit")
        await handle.cancel()
        # the workflow has seen the cancellation (a workflow task completed after it) while emit still runs
        await wait_for_event(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
        assert len(steps.of("emit_result")) == 1
        emit_gate.set()

    run = await run_node(env, steps, during=cancel_while_emitting)

    outcome = run.outcome  # exactly one emit call
    assert (outcome.status, outcome.output, outcome.error) == ("completed", {"echo": {"city": "Oslo"}}, None)
    assert run.returned == outcome
    assert run.status == WorkflowExecutionStatus.COMPLETED
