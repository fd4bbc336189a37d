"""Replay: histories recorded from real runs (tests/histories, made by
`python -m tests.support.record_histories`) must replay against the current NodeWorkflow, so a
change that breaks determinism fails CI before it breaks running workflows.

tests/histories/release-<version>/ holds the corpus each release's own code recorded (`make
histories RELEASE=<checkout>`, docs/upgrades.md): every mode, approvals, continue-as-new, cancel,
deadline and a claim-checked payload. It replays through the project's real data converter
(adapters/temporal_client.data_converter): the claim-checked payloads it references are kept
beside it (claim-checks.jsonl) and loaded into a real Redis for the codec to read. A failure names
the history file and the first command that diverged.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from adapters.settings import Settings
from adapters.temporal_client import data_converter
from core.step_io import NodeInput
from executor.local_services import free_port, start_redis
from tests.support.record_histories import CLAIM_CHECK_ENCODING, CLAIM_CHECKS
from tests.support.upgraded_workflows import PatchedUpgrade, UnguardedUpgrade
from workflows.node import NodeWorkflow

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))
RELEASES = sorted(HISTORY_DIR.glob("release-*"))
CORPUS = sorted(HISTORY_DIR.glob("release-*/*.json"))
RELEASE_CASES = {
    "tool_calculate", "tool_mcp_error", "llm", "llm_claim_checked", "config_error", "agent_parallel_tools",
    "agent_continue_as_new", "agent_approval", "local_steps_tool", "local_steps_config_error", "local_steps_agent",
    "tool_deadline", "tool_cancelled",
}


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


# -- the release corpus, through the real data converter ------------------------------------


@pytest.fixture(scope="module")
def replay_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Redis holding the corpus' claim-checked payloads (database 0; 1 stays empty)."""
    import redis

    port = free_port()
    redis_proc = start_redis(tmp_path_factory.mktemp("replay-redis"), port=port)
    try:
        client = redis.Redis(port=port)
        for store in HISTORY_DIR.glob(f"release-*/{CLAIM_CHECKS}"):
            for line in store.read_text().splitlines():
                blob = json.loads(line)
                client.set(blob["key"], base64.b64decode(blob["payload"]))
        yield port
    finally:
        redis_proc.stop()


@pytest.fixture
def converter(replay_redis: int) -> object:
    """The project's data converter, its codecs reading the corpus' Redis (one per test: its
    async Redis client belongs to the test's event loop)."""
    return data_converter(Settings(redis_addr=f"127.0.0.1:{replay_redis}"))


DIVERGENCE = re.compile(r"Nondeterminism error: ([^\"\\]*)")


def first_divergence(message: str) -> str:
    """The first diverging command, from temporalio's NondeterminismError message (the core's
    text, quoted inside the activation failure)."""
    found = DIVERGENCE.search(message)
    return found.group(1).strip() if found else message


async def replay_problem(path: Path, workflow_class: type, converter: object) -> str | None:
    """None when the history replays; else `<file>: <first diverging command>`."""
    replayer = Replayer(workflows=[workflow_class], data_converter=converter)  # type: ignore[arg-type]
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    if result.replay_failure is None:
        return None
    failure = result.replay_failure
    what = first_divergence(str(failure)) if isinstance(failure, NondeterminismError) else f"{type(failure).__name__}: {failure}"
    return f"{path.relative_to(HISTORY_DIR)}: first divergence: {what}"


def test_release_corpus_covers_every_case() -> None:
    assert RELEASES, "no release corpus in tests/histories/release-*"
    for release in RELEASES:
        names = {p.name.split(".")[0] for p in release.glob("*.json")}
        assert RELEASE_CASES <= names, f"{release.name} lacks {sorted(RELEASE_CASES - names)}"
        claim_checked = [p.name for p in release.glob("*.json") if CLAIM_CHECK_ENCODING in p.read_text()]
        assert claim_checked, f"{release.name}: no history with a claim-checked payload"
        assert (release / CLAIM_CHECKS).read_text().count("\n") >= 1


@pytest.mark.parametrize("path", CORPUS, ids=[str(p.relative_to(HISTORY_DIR)) for p in CORPUS])
async def test_release_history_replays_against_current_code(path: Path, converter: object) -> None:
    problem = await replay_problem(path, NodeWorkflow, converter)
    assert problem is None, problem


async def test_the_release_corpus_catches_a_changed_command_sequence_and_names_it(converter: object) -> None:
    """An agent loop with one more command per iteration, unguarded: the agent histories fail,
    each naming its file and the timer that diverged from the recorded model call."""
    problems = [await replay_problem(p, UnguardedUpgrade, converter) for p in CORPUS if p.name.startswith("agent_parallel_tools")]
    assert len(problems) == 1 and problems[0] is not None
    assert problems[0] == (
        f"{RELEASES[0].name}/agent_parallel_tools.run0.json: first divergence: "
        "Timer machine does not handle this event: HistoryEvent(id: 19, ActivityTaskScheduled)"
    )


@pytest.mark.parametrize("path", [p for p in CORPUS if p.name.startswith("agent_")], ids=lambda p: str(p.relative_to(HISTORY_DIR)))
async def test_the_same_change_behind_a_patch_replays_the_release(path: Path, converter: object) -> None:
    assert await replay_problem(path, PatchedUpgrade, converter) is None


async def test_a_claim_checked_history_needs_its_payloads(converter: object, replay_redis: int) -> None:
    """The store beside the corpus is what makes it decode: over a Redis database without it, the
    claim-checked input cannot be read, and the replayed workflow task fails naming the missing
    payload (docs/payload-storage.md: a task failure, retried, not a run failed at once)."""
    [path] = [p for p in CORPUS if p.name.startswith("llm_claim_checked")][:1]
    assert await replay_problem(path, NodeWorkflow, converter) is None
    empty = data_converter(Settings(redis_addr=f"127.0.0.1:{replay_redis}", redis_db=1))
    problem = await replay_problem(path, NodeWorkflow, empty)
    assert problem is not None and problem.startswith(f"{path.relative_to(HISTORY_DIR)}: first divergence: RuntimeError: ")
    assert re.search(r'message: "stored payload executor:payload:[0-9a-f]{64} is missing from Redis \(expired or deleted\)"', problem), problem
