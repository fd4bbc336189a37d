"""Replay: histories recorded from real runs (tests/histories, made by
`python -m tests.support.record_histories`) must replay against the current NodeWorkflow, so a
change that breaks determinism fails CI before it breaks running workflows."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from core.step_io import NodeInput
from workflows.node import NodeWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    doc = json.loads(path.read_text())
    return WorkflowHistory.from_json(doc["workflow_id"], doc["history"])


def test_recorded_histories_cover_every_mode() -> None:
    names = {p.name.split(".")[0] for p in HISTORIES}
    assert {"tool_calculate", "llm", "agent_parallel_tools", "agent_continue_as_new", "agent_approval"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_against_current_code(path: Path) -> None:
    replayer = Replayer(workflows=[NodeWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(path))
    assert result.replay_failure is None


@workflow.defn(name="NodeWorkflow", sandboxed=False)
class SkipsResolve(NodeWorkflow):
    """A careless change: the first step is gone. Replay must catch it."""

    @workflow.run
    async def run(self, node_input: NodeInput):  # type: ignore[override]
        return await workflow.execute_activity("emit_result", None, start_to_close_timeout=timedelta(seconds=5))


async def test_a_nondeterministic_change_fails_replay() -> None:
    replayer = Replayer(workflows=[SkipsResolve], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(next(p for p in HISTORIES if p.name.startswith("tool_calculate"))))
