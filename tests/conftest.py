from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doubles.scripted_llm import ScriptedLLM  # noqa: E402
from tests.support.stack import Stack, run_stack  # noqa: E402

ARTIFACTS = Path(os.environ.get("EXECUTOR_TEST_ARTIFACTS") or ROOT / "test-artifacts")  # logs, screenshots
# The shared stack's log; under pytest-xdist each worker process runs a stack of its own.
STACK_LOG = ARTIFACTS / f"stack{'-' + os.environ['PYTEST_XDIST_WORKER'] if os.environ.get('PYTEST_XDIST_WORKER') else ''}.log"


@pytest.fixture(params=["regular steps", "local reads"])
def step_shape(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a fast workflow test with every step a regular activity (`LOCAL_STEPS=false`) and with
    resolve and describe_tools as local activities (as shipped), under the full sandbox both."""
    from tests.support import stub_activities

    stub_activities.STEP_SHAPE = {"local_reads": request.param == "local reads"}
    yield request.param
    stub_activities.STEP_SHAPE = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, one per module of fast workflow tests."""
    from tests.support.stub_activities import time_skipping_environment

    async with await time_skipping_environment() as environment:
        yield environment


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    """One real stack shared by the pipeline tests; each test uses its own graph ids."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(STACK_LOG, "w") as log:
        yield from run_stack(tmp_path_factory.mktemp("stack"), log, llm)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which real servers this run used, so a green run says what it was green on."""
    from executor.local_services import REDIS_SERVERS, redis_version

    return ["redis servers: " + ", ".join(f"{kind} = {redis_version(kind)}" for kind in REDIS_SERVERS)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._executor_exitstatus = exitstatus  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with pytest's own exit code: temporalio's native threads can abort a finalising
    interpreter (sdk-python#300), which would turn a green run into exit code 134."""
    status = getattr(config, "_executor_exitstatus", None)
    if status is not None and os.environ.get("EXECUTOR_TESTS_HARD_EXIT", "1") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(status))
