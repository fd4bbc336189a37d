"""The agent loop: the model calls tools until done, each step a durable activity.

Per iteration: one LLM activity with the tool definitions (the model's native tool-use protocol),
then every `tool_use` block answered by a `tool_result` block, the tool calls running as parallel
activities. The transcript lives in workflow state, so a crash anywhere resumes here without
repeating a finished call. Tools outside the node's list are answered with an error result and
never run; tools under `require_approval` wait for a human decision (a Temporal update).

The stop reason is read before the tool calls: a turn cut at `max_tokens` may end inside a
`tool_use` block whose input is incomplete, and running a tool on half its arguments is worse than
failing, so such a turn fails the node and no tool runs. A call waiting for approval leaves the pending list however the wait
ends (decision, cancellation, node deadline), so queries never show a finished node as waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.llm import LlmActivities
    from activities.tools import ToolActivities
    from core.node_config import AgentNode
    from core.step_io import (
        AgentState,
        ApprovalDecision,
        ApprovalRecord,
        LlmReply,
        LlmRequest,
        PendingApproval,
        ToolCall,
        ToolCallRecord,
        TranscriptRef,
        TRANSCRIPT_MISSING,
    )
    from workflows import calls, policies
    from workflows.tool_content import tool_result_content

# stop reasons that end the loop with the model's answer
FINISHED = {"end_turn", "stop_sequence"}


class AgentFailure(Exception):
    """The loop cannot finish (max iterations, a cut turn, a refusal): fails the node."""


class ContinueAsNew(Exception):
    """History is getting long: go on in a fresh run with this state."""

    def __init__(self, state: AgentState):
        super().__init__("continue as new")
        self.state = state


class AgentLoop:
    def __init__(self, state: AgentState):
        self.state = state
        self.node: AgentNode = state.resolved.node  # type: ignore[assignment]
        self.model: str = state.resolved.model or ""
        self.last_tool: str | None = None
        self.pending: dict[str, PendingApproval] = {}
        self.decisions: dict[str, ApprovalDecision] = {}

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        c = self.state
        limit = self.node.max_iterations or 10
        while True:
            if self._history_is_long():
                raise ContinueAsNew(c)
            if c.iteration >= limit:
                raise AgentFailure(f"agent reached max_iterations ({limit}) without finishing")
            c.iteration += 1
            reply = await self._think()
            c.usage = c.usage + reply.usage
            self._check_budget()
            c.messages.append({"role": "assistant", "content": reply.content})
            if reply.stop_reason == "max_tokens":
                raise AgentFailure(self._cut_at_max_tokens(reply))
            if reply.tool_uses:
                results = await asyncio.gather(*(self._answer(block) for block in reply.tool_uses))
                c.messages.append({"role": "user", "content": list(results)})
                continue
            if reply.stop_reason in FINISHED:
                return self._output(reply)
            if reply.stop_reason == "pause_turn":
                continue  # the provider paused a long turn: send it back to go on
            raise AgentFailure(f"the model stopped with {reply.stop_reason!r} in iteration {c.iteration}")

    def _check_budget(self) -> None:
        """After every model call, before any of its tool calls: the node's token and cost budgets
        against the usage of all its runs (carried over continue-as-new, rebuilt by a replay)."""
        c, node = self.state, self.node
        used = c.usage.input_tokens + c.usage.output_tokens + c.usage.cache_creation_input_tokens + c.usage.cache_read_input_tokens
        if node.max_total_tokens is not None and used > node.max_total_tokens:
            raise AgentFailure(f"budget of {node.max_total_tokens} tokens exceeded after {c.iteration} iterations ({used} tokens used)")
        cost = c.usage.cost_usd
        if node.max_cost_usd is not None and cost is not None and cost > node.max_cost_usd:
            raise AgentFailure(f"budget of ${node.max_cost_usd} exceeded after {c.iteration} iterations (${cost:.6f} spent)")

    def _cut_at_max_tokens(self, reply: LlmReply) -> str:
        cut = f"the model's turn was cut at max_tokens ({self.node.llm_config.max_tokens}) in iteration {self.state.iteration}"
        if not reply.tool_uses:
            return cut
        names = ", ".join(dict.fromkeys(str(block.get("name", "")) for block in reply.tool_uses))
        return f"{cut} while asking for {names}: its input may be truncated, so no tool was called"

    async def _think(self) -> LlmReply:
        """One model call. After the first, the input names the stored transcript and carries only
        what came after it (docs/agent.md "Transcripts"). When the activity answers that the
        transcript is gone, the call is made once more with everything inline: a command only a
        transcript reference can lead to, which histories recorded before transcripts never hold."""
        c = self.state
        stored = c.transcript if c.transcript is not None and c.transcript.messages <= len(c.messages) else None
        try:
            reply = await self._call_llm(stored)
        except ActivityError as err:
            if stored is None or not (isinstance(err.cause, ApplicationError) and err.cause.type == TRANSCRIPT_MISSING):
                raise
            workflow.logger.warning("transcript %s is gone: sending iteration %s's conversation inline", stored.key, c.iteration)
            reply = await self._call_llm(None)
        c.transcript = reply.transcript
        return reply

    async def _call_llm(self, stored: TranscriptRef | None) -> LlmReply:
        cfg = self.node.llm_config
        request = LlmRequest(
            model=self.model,
            system=self.node.system,
            messages=self.state.messages[stored.messages :] if stored else self.state.messages,
            transcript=stored,
            keep_transcript=True,
            tools=self.state.tool_definitions,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
        )
        return await calls.run(
            LlmActivities.call_llm, request, policies.llm(self.state.resolved.timeouts), summary=f"iteration {self.state.iteration} · llm {self.model}"
        )

    async def _answer(self, block: dict[str, Any]) -> dict[str, Any]:
        """Run one requested tool call (or refuse it) and return its tool_result block."""
        name, call_id, arguments = block.get("name", ""), block.get("id", ""), block.get("input") or {}
        self.last_tool = name
        if name not in self.node.tools:
            return self._record(call_id, name, arguments, f"tool {name!r} is not available to this node", error=True)
        if name in self.node.require_approval:
            decision = await self._approval(call_id, name, arguments)
            if not decision.approve:
                why = f": {decision.reason}" if decision.reason else ""
                return self._record(call_id, name, arguments, f"a human rejected this call of {name}{why}", error=True)
        try:
            result = await calls.run(
                ToolActivities.call_tool,
                ToolCall(tool=name, arguments=arguments),
                policies.tool(self.state.resolved.timeouts),
                summary=f"iteration {self.state.iteration} · tool {name}",
            )
        except ActivityError as err:  # the call could not be made: tell the model, let it recover
            if isinstance(err.cause, CancelledError):
                raise  # the node is being cancelled or is past its deadline: not the model's business
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            return self._record(call_id, name, arguments, f"tool call failed: {message}", error=True)
        return self._record(call_id, name, arguments, tool_result_content(result.output), error=result.is_error)

    async def _approval(self, call_id: str, name: str, arguments: dict[str, Any]) -> ApprovalDecision:
        self.pending[call_id] = PendingApproval(call_id=call_id, tool=name, input=arguments, iteration=self.state.iteration)
        try:
            await workflow.wait_condition(lambda: call_id in self.decisions)
        finally:  # decided, cancelled or past the node deadline: no longer waiting either way
            del self.pending[call_id]
        return self.decisions[call_id]

    def check(self, decision: ApprovalDecision) -> None:
        """The update's validator: a refused decision leaves nothing in the history but the
        rejection its caller gets. `APPROVERS` (node, tool or worker) are checked against the
        approver the decision claims: docs/agent.md says what is and is not authenticated."""
        waiting = self.pending.get(decision.call_id)
        if waiting is None:
            raise ValueError(f"no tool call {decision.call_id!r} is waiting for approval")
        allowed = self.node.approvers_of(waiting.tool)
        if allowed and decision.approver not in allowed:
            who = repr(decision.approver) if decision.approver else "an unnamed caller"
            raise ValueError(f"{who} may not decide calls of {waiting.tool} (approvers: {', '.join(allowed)})")

    def decide(self, decision: ApprovalDecision) -> None:
        """Record a human's decision (who, when, what); `check` already accepted it."""
        waiting = self.pending[decision.call_id]
        self.state.approvals.append(
            ApprovalRecord(
                call_id=decision.call_id,
                tool=waiting.tool,
                iteration=waiting.iteration,
                approved=decision.approve,
                approver=decision.approver,
                identity=decision.identity,
                reason=decision.reason,
                decided_at=workflow.now(),
            )
        )
        self.decisions[decision.call_id] = decision

    def approvals(self) -> list[dict[str, Any]]:
        """The decisions so far, for the result event and `executor show` (JSON-ready)."""
        return [record.model_dump(mode="json") for record in self.state.approvals]

    # -- bookkeeping ----------------------------------------------------------------------
    def _record(
        self, call_id: str, name: str, arguments: dict[str, Any], content: str | list[dict[str, Any]], *, error: bool
    ) -> dict[str, Any]:
        self.state.tool_calls.append(ToolCallRecord(name=name, input=arguments, is_error=error))
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content}
        if error:
            block["is_error"] = True
        return block

    def _output(self, reply: LlmReply) -> dict[str, Any]:
        c = self.state
        return {
            "result": reply.text,
            "iterations": c.iteration,
            "tool_calls": [t.model_dump() for t in c.tool_calls],
            "usage": c.usage.model_dump(),
            "stop_reason": reply.stop_reason,
        }

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() >= self.state.resolved.timeouts.continue_as_new_events
        )

    def progress(self) -> dict[str, Any]:
        c = self.state
        return {
            "iteration": c.iteration,
            "max_iterations": self.node.max_iterations,
            "last_tool": self.last_tool,
            "tool_calls": len(c.tool_calls),
            "usage": c.usage.model_dump(),
            "waiting_for_approval": [p.model_dump() for p in self.pending.values()],
            "approvals": self.approvals(),
            "run": c.runs,
        }
