"""Scratch experiment (bench only): NodeWorkflow with `resolve_node` and `emit_result` run as
local activities, the workflow code itself unchanged.

Workflow code runs in Temporal's sandbox, which imports `workflows.node` afresh for each run; this
module, imported there too, replaces that copy's `workflow` name with a proxy that turns those two
steps into `workflow.execute_local_activity`. LLM and tool calls stay regular activities. Only the
bench's experiment worker (`BENCH_PATCHES=local-steps`) registers this class.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from executor.contract import NodeOutcome
    from executor.steps import NodeInput

import workflows.node as _node  # noqa: E402

LOCAL = frozenset({"resolve_node", "emit_result"})


class _LocalSteps:
    """`temporalio.workflow` with execute_activity of resolve and emit made local."""

    def __getattr__(self, name: str) -> Any:
        return getattr(workflow, name)

    @staticmethod
    def execute_activity(activity: Any, arg: Any, **options: Any) -> Any:
        if activity in LOCAL:
            options.pop("heartbeat_timeout", None)
            return workflow.execute_local_activity(activity, arg, **options)
        return workflow.execute_activity(activity, arg, **options)

    @staticmethod
    def start_activity(activity: Any, arg: Any, **options: Any) -> Any:
        if activity in LOCAL:  # emit is started (then shielded from cancellation), not executed
            options.pop("heartbeat_timeout", None)
            return workflow.start_local_activity(activity, arg, **options)
        return workflow.start_activity(activity, arg, **options)


_node.workflow = _LocalSteps()  # type: ignore[assignment]


@workflow.defn(name="NodeWorkflow")
class LocalStepsNodeWorkflow(_node.NodeWorkflow):
    @workflow.run
    async def run(self, node_input: NodeInput) -> NodeOutcome:
        return await super().run(node_input)
