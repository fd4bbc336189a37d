"""Version 2 of NodeWorkflow, for the upgrade and replay tests: the agent loop issues one more
command per iteration (a short timer before each model call), under the same workflow name.

`UnguardedUpgrade` is the careless change: its commands differ from any history written by the
released code, so replaying one fails. `PatchedUpgrade` is the same change behind
`workflows.versioning.patched` (the example of docs/upgrades.md): old histories replay on the
old path, new runs take the new one.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.step_io import LlmReply, NodeInput
    from core.result_event import NodeOutcome
    from workflows import versioning
    from workflows.agent import AgentLoop
    from workflows.node import NodeWorkflow

PAUSE = timedelta(milliseconds=50)


class PausingLoop(AgentLoop):
    async def _think(self) -> LlmReply:
        await workflow.sleep(PAUSE)  # the extra command
        return await super()._think()


class PatchedPausingLoop(AgentLoop):
    async def _think(self) -> LlmReply:
        if versioning.patched(versioning.PAUSE_BEFORE_LLM):
            await workflow.sleep(PAUSE)
        return await super()._think()


@workflow.defn(name="NodeWorkflow")
class UnguardedUpgrade(NodeWorkflow):
    agent_loop = PausingLoop

    @workflow.run
    async def run(self, node_input: NodeInput) -> NodeOutcome:
        return await super().run(node_input)


@workflow.defn(name="NodeWorkflow")
class PatchedUpgrade(NodeWorkflow):
    agent_loop = PatchedPausingLoop

    @workflow.run
    async def run(self, node_input: NodeInput) -> NodeOutcome:
        return await super().run(node_input)
