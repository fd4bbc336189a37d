"""NodeWorkflow: one executor node, from work item to exactly one result event.

resolve → the mode's steps (llm: one call; tool: one call; agent: the loop) → emit. Emit runs
last on every outcome: success, failure, and cancellation. Deterministic code only: every I/O is
an activity, time and ids come from the workflow API.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.errors import NODE_CONFIG
    from executor.contract import AgentNode, LlmNode, NodeOutcome, ToolNode, WorkItem
    from executor.steps import EmitReceipt, LlmReply, LlmRequest, ResolvedNode, ToolCall, ToolResult
    from workflows import policies


class NodeFailure(Exception):
    """The node failed for a reason that is already a readable message."""


def describe(err: ActivityError, step: str) -> str:
    """A readable reason from an activity failure: the cause's own message, with the step."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if cause.type == NODE_CONFIG:
            return cause.message
        return f"{step}: {cause.message}"
    if isinstance(cause, TimeoutError):
        return f"{step}: timed out ({cause.type.name.lower().replace('_', '-') if cause.type else 'timeout'})"
    if isinstance(cause, CancelledError):
        return f"{step}: cancelled"
    return f"{step}: {cause or err}"


@workflow.defn(name="NodeWorkflow")
class NodeWorkflow:
    def __init__(self) -> None:
        self._status = "resolving"
        self._mode: str | None = None
        self._model: str | None = None
        self._step = "resolve"  # the step a failure is reported against

    @workflow.query
    def progress(self) -> dict[str, Any]:
        return {"status": self._status, "mode": self._mode, "model": self._model}

    @workflow.run
    async def run(self, item: WorkItem) -> NodeOutcome:
        started = workflow.now()
        cancelled = False
        try:
            resolved = await workflow.execute_activity(
                "resolve_node", item, result_type=ResolvedNode, summary="resolve", **policies.RESOLVE
            )
            self._mode, self._model = resolved.node.mode, resolved.model
            workflow.set_current_details(self._details(item))
            self._status = "running"
            output, details = await self._run_mode(resolved)
            outcome = self._outcome(item, started, "completed", output=output, details=details)
        except NodeFailure as failure:
            outcome = self._outcome(item, started, "failed", error=str(failure))
        except ActivityError as err:
            outcome = self._outcome(item, started, "failed", error=describe(err, self._step))
        except asyncio.CancelledError:
            cancelled = True
            outcome = self._outcome(item, started, "failed", error="cancelled")
        self._status = outcome.status
        receipt = await workflow.execute_activity(
            "emit_result", outcome, result_type=EmitReceipt, summary=f"emit {outcome.status}", **policies.EMIT
        )
        workflow.logger.info("node %s emitted to %s", outcome.status, receipt.stream)
        if cancelled:
            raise asyncio.CancelledError()
        return outcome

    async def _run_mode(self, resolved: ResolvedNode) -> tuple[Any, dict[str, Any]]:
        node = resolved.node
        if isinstance(node, ToolNode):
            self._step = "tool"
            result = await self._call_tool(ToolCall(tool=node.tool_name, arguments=node.tool_params))
            if result.is_error:
                raise NodeFailure(f"tool {node.tool_name}: {result.error_message}")
            return result.output, {"tool": node.tool_name, "server": result.server}
        if isinstance(node, LlmNode):
            assert resolved.model is not None
            self._step = "llm"
            cfg = node.llm_config
            reply = await self._call_llm(
                LlmRequest(
                    model=resolved.model,
                    system=cfg.system,
                    messages=[{"role": "user", "content": node.prompt}],
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                ),
                summary=f"llm {resolved.model}",
            )
            usage = reply.usage.model_dump()
            return {"content": reply.text, "usage": usage}, {"model": reply.model, "stop_reason": reply.stop_reason}
        assert isinstance(node, AgentNode)
        raise NodeFailure("agent mode is not available in this version of the executor")

    async def _call_llm(self, request: LlmRequest, summary: str) -> LlmReply:
        return await workflow.execute_activity(
            "call_llm", request, result_type=LlmReply, summary=summary, **policies.LLM
        )

    async def _call_tool(self, call: ToolCall, summary: str | None = None) -> ToolResult:
        return await workflow.execute_activity(
            "call_tool", call, result_type=ToolResult, summary=summary or f"tool {call.tool}", **policies.TOOL
        )

    def _details(self, item: WorkItem) -> str:
        parts = [f"graph {item.graph_id}", f"node {item.node_id}", f"mode {self._mode}"]
        if self._model:
            parts.append(f"model {self._model}")
        return " · ".join(parts)

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
            details={**(details or {}), "attempt": info.attempt},
        )
