"""NodeWorkflow: one executor node, from work item to exactly one result event.

resolve → the mode's steps (llm: one call; tool: one call; agent: the loop) → emit. Emit runs
last on every outcome: success, failure and cancellation. A long agent loop continues as new
with its transcript and counters; only the last run emits. Deterministic code only: every I/O
is an activity, time and ids come from the workflow API.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.workflow import ContinueAsNewVersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as StepTimeout

with workflow.unsafe.imports_passed_through():
    from activities.emit import EmitActivities
    from core.failures import NODE_CONFIG
    from activities.llm import LlmActivities
    from activities.resolve import ResolveActivities
    from activities.tools import ToolActivities
    from core.node_config import AgentNode, LlmNode, ToolNode, node_summary
    from core.result_event import NodeOutcome
    from core.work_item import WorkItem
    from core.step_io import (
        AgentState,
        ApprovalDecision,
        EmitReceipt,
        LlmRequest,
        NodeInput,
        ResolvedNode,
        ToolCall,
    )
    from core import search_attributes as sa
    from workflows import calls, policies
    from workflows.agent import AgentFailure, AgentLoop, ContinueAsNew


class NodeFailure(Exception):
    """The node failed for a reason that is already a readable message."""


def failure_reason(err: ActivityError | ApplicationError, step: str) -> str:
    """A readable reason from an activity failure: the cause's own message, with the step. (A
    local activity's failure arrives as the ApplicationError itself, not wrapped.)"""
    cause = err if isinstance(err, ApplicationError) else err.cause
    if isinstance(cause, ApplicationError):
        return cause.message if cause.type == NODE_CONFIG else f"{step}: {cause.message}"
    if isinstance(cause, StepTimeout):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"{step}: timed out ({kind})"
    if isinstance(cause, CancelledError):
        return f"{step}: cancelled"
    return f"{step}: {cause or err}"


# Pinned (the versioned worker's default, executor/deployment.py; an annotation here would stop an
# unversioned worker from completing any task): a run stays on the worker version that started
# it, and a long agent loop moves to the current version when it continues as new (a fresh run
# replays nothing old). docs/upgrades.md.
@workflow.defn(name="NodeWorkflow")
class NodeWorkflow:
    agent_loop: type[AgentLoop] = AgentLoop  # a variant's loop (tests/support/upgraded_workflows.py)

    def __init__(self) -> None:
        self._status = "resolving"
        self._step = "resolve"  # the step a failure is reported against
        self._mode: str | None = None
        self._model: str | None = None
        self._item: WorkItem | None = None
        self._agent: AgentLoop | None = None
        self._search = False  # set search attributes (registered in the namespace)
        self._at_start = False  # the starter set them (NodeInput.attributes_at_start)
        self._local_resolve = False  # resolve as a local activity (NodeInput.local_reads)
        self._local_describe = False  # describe_tools as a local activity (NodeInput.local_reads)
        self._local_emit = False  # emit as a local activity: only runs recorded before 0.2 (NodeInput.local_steps)

    # -- inspection -------------------------------------------------------------------------
    @workflow.query
    def progress(self) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self._status, "mode": self._mode, "model": self._model, "step": self._step}
        if self._agent is not None:
            info.update(self._agent.progress())
        return info

    @workflow.query
    def transcript(self) -> list[dict[str, Any]]:
        return list(self._agent.state.messages) if self._agent is not None else []

    @workflow.query
    def pending_approvals(self) -> list[dict[str, Any]]:
        return [p.model_dump() for p in self._agent.pending.values()] if self._agent is not None else []

    @workflow.update
    def decide(self, decision: ApprovalDecision) -> str:
        """Approve or reject a tool call waiting under `require_approval`."""
        assert self._agent is not None
        self._agent.decide(decision)
        return "approved" if decision.approve else "rejected"

    @decide.validator
    def _validate_decision(self, decision: ApprovalDecision) -> None:
        if self._agent is None:
            raise ValueError(f"no tool call {decision.call_id!r} is waiting for approval")
        self._agent.check(decision)

    # -- the run ----------------------------------------------------------------------------
    @workflow.run
    async def run(self, node_input: NodeInput) -> NodeOutcome:
        item, carry = node_input.item, node_input.carry
        self._item = item
        self._local_resolve = node_input.local_steps or node_input.local_reads
        self._local_describe = node_input.local_reads
        self._local_emit = node_input.local_steps
        self._at_start = node_input.attributes_at_start
        started = (carry.started_at if carry else None) or workflow.now()
        cancelled = False
        try:
            output, details = await self._execute(item, carry, started)
            outcome = self._outcome(item, started, "completed", output=output, details=details)
        except ContinueAsNew as more:
            await workflow.wait_condition(workflow.all_handlers_finished)
            next_carry = more.state.model_copy(update={"runs": more.state.runs + 1, "started_at": started})
            workflow.continue_as_new(
                # a new run takes today's steps: a loop recorded with a local emit (before 0.2) gets the regular one
                node_input.model_copy(
                    update={"carry": next_carry, "attributes_at_start": self._search or self._at_start, "local_steps": False, "local_reads": self._local_resolve}
                ),
                initial_versioning_behavior=ContinueAsNewVersioningBehavior.AUTO_UPGRADE,
            )
        except (NodeFailure, AgentFailure) as failure:
            outcome = self._outcome(item, started, "failed", error=str(failure))
        except (ActivityError, ApplicationError) as err:
            # Python 3.12+ lets the cancelled step's own error out of `asyncio.wait_for` where 3.11
            # raised CancelledError: a cancellation request decides, whichever arrives.
            cancelled = workflow.cancellation_reason() is not None and isinstance(getattr(err, "cause", None), CancelledError)
            error = f"cancelled by request (Temporal UI or CLI) during {self._step}" if cancelled else failure_reason(err, self._step)
            outcome = self._outcome(item, started, "failed", error=error)
        except asyncio.CancelledError:
            cancelled = True
            error = f"cancelled by request (Temporal UI or CLI) during {self._step}"
            outcome = self._outcome(item, started, "failed", error=error)
        self._status = outcome.status
        # A starter that set attributes shows the namespace has them: a node that failed before
        # its resolve step finished is filterable by outcome too.
        if self._search or self._at_start:
            workflow.upsert_search_attributes([sa.OUTCOME.value_set(outcome.status)])
        receipt = await self._emit(outcome)
        workflow.logger.info("node %s emitted to %s", outcome.status, receipt.stream)
        if cancelled:
            raise asyncio.CancelledError()
        return outcome

    async def _emit(self, outcome: NodeOutcome) -> EmitReceipt:
        """The result must reach the orchestrator: a cancellation requested while emitting (say,
        during a Redis outage) does not stop it; the outcome was decided before it came."""
        emitting = calls.start(
            EmitActivities.emit_result, outcome, policies.EMIT, summary=f"emit {outcome.status}", local=self._local_emit
        )
        while True:
            try:
                return await asyncio.shield(emitting)
            except asyncio.CancelledError:
                workflow.logger.info("cancellation requested while emitting the %s result; emitting it first", outcome.status)

    async def _execute(self, item: WorkItem, carry: AgentState | None, started: datetime) -> tuple[Any, dict[str, Any]]:
        """Resolve, then run the mode's steps within the node's deadline."""
        resolved = carry.resolved if carry else await calls.run(
            ResolveActivities.resolve_node, item, policies.RESOLVE, summary="resolve", local=self._local_resolve
        )
        self._mode, self._model = resolved.node.mode, resolved.model
        self._search = resolved.search_attributes
        workflow.set_current_details(node_summary(item.graph_id, item.node_id, self._mode, self._model))
        if self._search:  # what the starter did not set (core/search_attributes.py); as a rule nothing
            have = workflow.info().typed_search_attributes if self._at_start else TypedSearchAttributes.empty
            updates = sa.still_to_set(have, item.graph_id, item.node_id, self._mode, self._model)
            if updates:
                workflow.upsert_search_attributes(updates)
        self._status = "running"
        deadline = resolved.node.timeout or resolved.timeouts.node_seconds
        remaining = deadline - (workflow.now() - started).total_seconds()
        try:
            return await asyncio.wait_for(self._run_mode(resolved, carry), timeout=max(remaining, 0.001))
        except asyncio.TimeoutError:
            raise NodeFailure(f"node deadline of {deadline:g}s exceeded during {self._step}") from None
        except ActivityError as err:
            # wait_for cancels the step in flight; its cancellation surfaces as the step's error
            if isinstance(err.cause, CancelledError) and (workflow.now() - started).total_seconds() >= deadline:
                raise NodeFailure(f"node deadline of {deadline:g}s exceeded during {self._step}") from None
            raise

    async def _run_mode(self, resolved: ResolvedNode, carry: AgentState | None) -> tuple[Any, dict[str, Any]]:
        node = resolved.node
        if isinstance(node, ToolNode):
            self._step = f"tool {node.tool_name}"
            result = await calls.run(
                ToolActivities.call_tool,
                ToolCall(tool=node.tool_name, arguments=node.tool_params),
                policies.tool(resolved.timeouts),
                summary=f"tool {node.tool_name}",
            )
            if result.is_error:
                raise NodeFailure(f"tool {node.tool_name}: {result.error_message}")
            return result.output, {"tool": node.tool_name, "server": result.server}
        if isinstance(node, LlmNode):
            self._step = f"llm {resolved.model}"
            cfg = node.llm_config
            reply = await calls.run(
                LlmActivities.call_llm,
                LlmRequest(
                    model=resolved.model or "",
                    system=cfg.system,
                    messages=[{"role": "user", "content": node.prompt}],
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                ),
                policies.llm(resolved.timeouts),
                summary=f"llm {resolved.model}",
            )
            output = {"content": reply.text, "usage": reply.usage.model_dump()}
            return output, {"model": reply.model, "stop_reason": reply.stop_reason}
        assert isinstance(node, AgentNode)
        if carry is None:
            self._step = "describe tools"
            carry = await self._start_agent(resolved, node)
        self._step = "agent"
        self._agent = self.agent_loop(carry)
        output = await self._agent.run()
        return output, {"model": resolved.model, "runs": carry.runs, **self._approvals()}

    async def _start_agent(self, resolved: ResolvedNode, node: AgentNode) -> AgentState:
        specs = await calls.run(
            ToolActivities.describe_tools, node.tools, policies.tool(resolved.timeouts), summary=f"describe tools {', '.join(node.tools)}",
            local=self._local_describe,
        )
        definitions = [
            {"name": name, "description": spec.description, "input_schema": spec.input_schema}
            for name, spec in zip(node.tools, specs, strict=True)
        ]
        return AgentState(
            resolved=resolved,
            tool_definitions=definitions,
            messages=[{"role": "user", "content": node.task}],
            started_at=workflow.now(),
        )

    def _approvals(self) -> dict[str, Any]:
        """`approvals` for the result event's data, only when someone decided (events of nodes
        without approvals stay as they were)."""
        decided = self._agent.approvals() if self._agent is not None else []
        return {"approvals": decided} if decided else {}

    def _outcome(
        self,
        item: WorkItem,
        started: datetime,
        status: str,
        output: Any = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> NodeOutcome:
        info = workflow.info()
        extra = dict(details or {})
        if self._agent is not None and status == "failed":
            extra.update(iterations=self._agent.state.iteration, usage=self._agent.state.usage.model_dump(), **self._approvals())
        return NodeOutcome(
            graph_id=item.graph_id,
            node_id=item.node_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            status=status,  # type: ignore[arg-type]
            output=output,
            error=error,
            mode=self._mode,  # type: ignore[arg-type]
            event_id=str(workflow.uuid4()),
            started_at=started,
            finished_at=workflow.now(),
            details=extra,
        )
