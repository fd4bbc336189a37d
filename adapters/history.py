"""Reading a NodeWorkflow run's history from outside: its input (first event) and its newest
events (read backwards, so a long agent history costs one page, not thousands of events).

Used by the watchdog (why a run ended or is stuck) and by `rerun` (the node's original input).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client

from core.step_io import NodeInput

PAGE = 100


async def node_input(client: Client, workflow_id: str, run_id: str | None = None) -> NodeInput:
    """The run's `NodeInput`, decoded like the worker does (claim check included: a payload gone
    from Redis raises `ClaimCheckMissing`)."""
    async for event in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events(page_size=1):
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [value] = await client.data_converter.decode(payloads, [NodeInput])
        return value
    raise LookupError(f"{workflow_id} has no history")


async def newest_first(client: Client, workflow_id: str, run_id: str, limit: int = 1000) -> AsyncIterator[HistoryEvent]:
    """The run's events from the newest back, at most `limit` of them."""
    token = b""
    seen = 0
    while seen < limit:
        reply = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                maximum_page_size=min(PAGE, limit - seen),
                next_page_token=token,
            )
        )
        for event in reply.history.events:
            yield event
            seen += 1
        token = reply.next_page_token
        if not token or not reply.history.events:
            return
