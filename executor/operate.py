"""Operator commands that talk to Temporal: list, approve and reject tool calls waiting for a human."""

from __future__ import annotations

import json

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from executor import temporal_client
from executor.config import Settings
from executor.steps import ApprovalDecision

EXIT_FAILED = 1


async def approvals(settings: Settings, workflow_id: str) -> int:
    client = await temporal_client.connect(settings)
    try:
        waiting = await client.get_workflow_handle(workflow_id).query("pending_approvals")
    except RPCError as exc:
        print(f"error: {exc.message}")
        return EXIT_FAILED
    if not waiting:
        print("no tool call is waiting for approval")
    for call in waiting:
        print(f"{call['call_id']}  iteration {call['iteration']}  {call['tool']} {json.dumps(call['input'], ensure_ascii=False)}")
    return 0


async def decide(settings: Settings, workflow_id: str, call_id: str, approve: bool, reason: str | None, by: str | None) -> int:
    client = await temporal_client.connect(settings)
    decision = ApprovalDecision(call_id=call_id, approve=approve, reason=reason, by=by)
    try:
        verdict = await client.get_workflow_handle(workflow_id).execute_update("decide", decision)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        cause = getattr(exc, "cause", None)
        print(f"error: {getattr(cause, 'message', None) or exc}")
        return EXIT_FAILED
    print(f"{call_id}: {verdict}")
    return 0
