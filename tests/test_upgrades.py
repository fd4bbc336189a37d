"""Safe upgrades on real processes (docs/upgrades.md): old and new workers poll one task queue.

The live rollout: version 1 workers run 20 agent loops (some waiting for approval, some held in
the middle of a model call, some long enough to continue as new); version 2, whose loop issues one
more command per iteration (tests/support/upgraded_workflows.py), starts beside it and is made
current with the operator's command. Every loop finishes with exactly one result event and no
workflow task ever fails; the pinned loops finish on v1, their continued runs and every new node
run on v2, and v1 is stopped only once it holds no open node. Then the same incompatible change
deployed *without* versioning: the runs it cannot replay fail, and each gets a `node.failed` naming
the nondeterminism instead of hanging.

Each test has its own task queue, work stream and deployment on the shared stack's servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from core.step_io import ApprovalDecision
from doubles.scripted_llm import Step, text, tool_use
from executor import deployment
from executor.local_services import temporal_binary
from tests.support.stack import ROOT, Stack, wait_until
from tests.support.upgraded_workflows import PAUSE

pytestmark = pytest.mark.slow

ROUND_TRIP = 90.0  # generous: a busy 2-core machine


class HeldModel:
    """A scripted model whose first turn is held until released: agent loops caught mid-call.
    `long` loops then call a tool `iterations` times (enough history to continue as new)."""

    def __init__(self, prefix: str, iterations: int):
        self.prefix = prefix
        self.iterations = iterations
        self.release = threading.Event()
        self.held = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Step:
        turns = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if turns == 0:
            with self._lock:
                self.held += 1
            self.release.wait(ROUND_TRIP)
        long = str(body["model"]).startswith(self.prefix + "-long")
        if turns < (self.iterations if long else 1):
            return tool_use(("calculate", {"expression": f"{turns}+1"}))
        return text(f"done after {turns} tools")


class Rollout:
    """One deployment of its own on the shared stack's servers."""

    def __init__(self, stack: Stack, versioned: bool):
        tag = uuid.uuid4().hex[:6]
        self.stack = stack
        self.stream = f"upgrade.work.{tag}"
        self.deployment = f"upgrade-{tag}"
        self.env = {
            "TEMPORAL_TASK_QUEUE": f"upgrade-{tag}",
            "WORKER_DEPLOYMENT_NAME": self.deployment,
            "WORKER_VERSIONING": "true" if versioned else "false",
            "CONTINUE_AS_NEW_EVENTS": "50",
        }
        self.names: list[str] = []

    def start(self, kind: str, name: str, **env: str) -> None:
        self.stack.start_service(kind, name, **self.env, **env)
        self.names.append(name)

    def stop(self, name: str) -> int:
        return self.stack.procs.pop(name).stop()

    def stop_all(self) -> None:
        for name in self.names:
            if name in self.stack.procs:
                self.stop(name)

    def submit_agent(self, config: dict[str, Any]) -> tuple[str, str]:
        graph, event_id = f"g-{uuid.uuid4().hex[:10]}", str(uuid.uuid4())
        self.stack.submit({"id": event_id, "graph_id": graph, "node_id": "n1", "node_type": "executor", "config": config}, stream=self.stream)
        return graph, f"node:{graph}:n1:{event_id}"

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=60, cwd=str(ROOT), env=self.stack.env(**self.env)
        )


def waiting_calls(stack: Stack, workflow_ids: list[str]) -> dict[str, str] | None:
    """The call each workflow waits to have approved; None until every one of them waits (one
    client for all the queries)."""

    async def check(client: Client) -> dict[str, str] | None:
        calls = {}
        for wid in workflow_ids:
            try:
                pending = await client.get_workflow_handle(wid).query("pending_approvals")
            except RPCError:  # not started yet
                return None
            if not pending:
                return None
            calls[wid] = pending[0]["call_id"]
        return calls

    return stack.temporal(check)


def approve_all(stack: Stack, calls: dict[str, str], *, run_may_fail: bool = False) -> None:
    async def approve(client: Client) -> None:
        for wid, call_id in calls.items():
            try:
                await client.get_workflow_handle(wid).execute_update("decide", ApprovalDecision(call_id=call_id, approve=True))
            except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError):
                if not run_may_fail:
                    raise
                # the run failed while the update was in flight: its outcome is its result event

    stack.temporal(approve)


def runs_of(stack: Stack, workflow_id: str) -> list[dict[str, Any]]:
    """Every run of a workflow, oldest first: its build id, the event types of its history, and
    how many of v2's pauses (its extra command) it holds."""

    async def read(client: Client) -> list[dict[str, Any]]:
        found = []
        async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
            handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
            info = (await handle.describe()).raw_description.workflow_execution_info
            events = [e async for e in handle.fetch_history_events()]
            found.append({
                "started": execution.start_time,
                "build_id": info.versioning_info.deployment_version.build_id,
                "events": [EventType.Name(e.event_type) for e in events],
                "pauses": sum(1 for e in events if e.HasField("timer_started_event_attributes")
                              and e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() == PAUSE),
                "task_failures": [e.workflow_task_failed_event_attributes.failure.message for e in events if e.HasField("workflow_task_failed_event_attributes")],
            })
        return sorted(found, key=lambda run: run["started"])

    return stack.temporal(read)


def test_a_rolling_upgrade_keeps_every_loop_on_the_version_that_started_it(stack: Stack, llm) -> None:  # noqa: ANN001
    rollout = Rollout(stack, versioned=True)
    model = HeldModel(f"upg-{uuid.uuid4().hex[:6]}", iterations=8)
    llm.respond(model.prefix, model)
    try:
        rollout.start("worker", "upgrade-v1", WORKER_BUILD_ID="v1")
        rollout.start("ingress", "upgrade-ingress", WORK_STREAMS=rollout.stream, WATCHDOG_INTERVAL="1")
        approvals = [rollout.submit_agent({"llm_config": {"model": "echo-upgrade"}, "tools": ["echo"], "require_approval": ["echo"],
                                           "task": "echo: hello"}) for _ in range(8)]
        held = [rollout.submit_agent({"llm_config": {"model": f"{model.prefix}-short"}, "tools": ["calculate"]}) for _ in range(8)]
        long = [rollout.submit_agent({"llm_config": {"model": f"{model.prefix}-long"}, "tools": ["calculate"], "max_iterations": 20})
                for _ in range(4)]
        approval_calls = wait_until(lambda: waiting_calls(stack, [wid for _, wid in approvals]), timeout=ROUND_TRIP, interval=0.5,
                                    message="8 loops waiting for approval")
        wait_until(lambda: model.held >= 12, timeout=ROUND_TRIP, message="12 loops in the middle of a model call")

        # v2 beside v1: it polls, but new work goes to the current version (v1) until an operator says
        rollout.start("upgraded-worker", "upgrade-v2", WORKER_BUILD_ID="v2")
        wait_until(lambda: "v2" in stack.temporal(lambda c: deployment.version_statuses(c, rollout.deployment)), timeout=ROUND_TRIP,
                   interval=0.5, message="the server knows version v2")
        statuses = stack.temporal(lambda c: deployment.version_statuses(c, rollout.deployment))
        assert statuses == {"v1": "current", "v2": "inactive"}, statuses  # v2 did not make itself current
        done = rollout.cli(temporal_binary(), "worker", "deployment", "set-current-version", "--deployment-name", rollout.deployment,
                           "--build-id", "v2", "--yes", "--address", f"127.0.0.1:{stack.temporal_port}")
        assert done.returncode == 0, done.stderr

        status = rollout.cli(sys.executable, "-m", "executor", "status", "--json")
        versions = {row["build_id"]: row for row in json.loads(status.stdout)["worker_versions"]}
        assert versions["v1"]["status"] == "draining" and versions["v1"]["open_nodes"] == 20 and versions["v1"]["pollers"], versions
        assert versions["v2"]["status"] == "current" and versions["v2"]["pollers"], versions
        plain = rollout.cli(sys.executable, "-m", "executor", "status").stdout
        assert "build id      v1 (draining): 1 workers polling, 20 open nodes" in plain, plain

        fresh = [rollout.submit_agent({"llm_config": {"model": "echo-after-upgrade"}, "tools": ["calculate"], "task": "What is 2+2?"}) for _ in range(3)]
        model.release.set()
        approve_all(stack, approval_calls)
        everything = approvals + held + long + fresh
        events = {graph: stack.wait_event(graph, timeout=ROUND_TRIP) for graph, _ in everything}

        # v1 is retired only once it holds no open node
        wait_until(lambda: stack.temporal(lambda c: deployment.open_nodes(c, rollout.env["TEMPORAL_TASK_QUEUE"], rollout.deployment, "v1")) == 0,
                   timeout=ROUND_TRIP, interval=0.5, message="v1 drained")
        assert rollout.stop("upgrade-v1") == 0

        assert [e["type"] for e in events.values()] == ["node.completed"] * 23, [e for e in events.values() if e["type"] != "node.completed"]
        assert all(len(stack.events(graph)) == 1 for graph, _ in everything)
        runs = {wid: runs_of(stack, wid) for _, wid in everything}
        assert [r["task_failures"] for rs in runs.values() for r in rs if r["task_failures"]] == []
        for _, wid in approvals + held:
            assert [r["build_id"] for r in runs[wid]] == ["v1"], (wid, runs[wid])
            assert runs[wid][0]["pauses"] == 0
        for _, wid in long:  # pinned to v1 until it continued as new, then on the current version
            builds = [r["build_id"] for r in runs[wid]]
            assert len(builds) >= 2 and builds[0] == "v1" and set(builds[1:]) == {"v2"}, (wid, builds)
            assert all(r["pauses"] >= 1 for r in runs[wid][1:])
        for _, wid in fresh:
            assert [r["build_id"] for r in runs[wid]] == ["v2"] and runs[wid][0]["pauses"] >= 1, (wid, runs[wid])
    finally:
        model.release.set()
        rollout.stop_all()


def test_an_incompatible_change_without_versioning_fails_each_run_with_a_node_failed_naming_it(stack: Stack) -> None:
    rollout = Rollout(stack, versioned=False)
    try:
        rollout.start("worker", "unversioned-v1")
        rollout.start("ingress", "unversioned-ingress", WORK_STREAMS=rollout.stream, WATCHDOG_INTERVAL="1")
        waiting = [rollout.submit_agent({"llm_config": {"model": "echo-unversioned"}, "tools": ["echo"], "require_approval": ["echo"],
                                         "task": "echo: hello"}) for _ in range(3)]
        calls = wait_until(lambda: waiting_calls(stack, [wid for _, wid in waiting]), timeout=ROUND_TRIP, interval=0.5, message="3 loops waiting")
        assert rollout.stop("unversioned-v1") == 0
        rollout.start("upgraded-worker", "unversioned-v2")
        approve_all(stack, calls, run_may_fail=True)  # wakes each run on v2, which cannot replay it
        for graph, wid in waiting:
            event = stack.wait_event(graph, timeout=ROUND_TRIP)
            assert event["type"] == "node.failed", event
            assert "nondeterminism" in event["data"]["error"].lower() and event["data"]["reported_by"] == "watchdog", event
            assert event["data"]["workflow_id"] == wid
            assert len(stack.events(graph)) == 1
    finally:
        rollout.stop_all()


STRANDED_AFTER = 3  # of the stranded test's ingress, in seconds


def logged(stack: Stack, process: str, text: str) -> list[str]:
    """The lines `process` wrote to the stack's log that contain `text`."""
    return [line for line in Path(stack.log.name).read_text().splitlines() if line.startswith(f"[{process}] ") and text in line]


def run_status(stack: Stack, workflow_id: str) -> str:
    async def read(client: Client) -> str:
        return (await client.get_workflow_handle(workflow_id).describe()).status.name

    return stack.temporal(read)


def test_nodes_stranded_on_a_version_without_workers_get_one_node_failed_naming_it(stack: Stack) -> None:
    """A worker restarted with new code outside the documented rollout (a new build id nobody makes
    current) strands the nodes pinned to the old version and every new node: the new worker says so
    at start, and the watchdog reports each of them once, naming the version and what to do."""
    rollout = Rollout(stack, versioned=True)
    try:
        rollout.start("worker", "stranded-v1", WORKER_BUILD_ID="v1")
        rollout.start("ingress", "stranded-ingress", WORK_STREAMS=rollout.stream, WATCHDOG_INTERVAL="1", STRANDED_AFTER=str(STRANDED_AFTER))
        pinned_graph, pinned = rollout.submit_agent({"llm_config": {"model": "echo-stranded"}, "tools": ["echo"],
                                                     "require_approval": ["echo"], "task": "echo: hello"})
        wait_until(lambda: waiting_calls(stack, [pinned]), timeout=ROUND_TRIP, interval=0.5, message="the node waits for approval on v1")

        # While v1's worker is alive, the node waiting on it is not stranded, however long it waits:
        # an absence, so it is watched over a window of many watchdog passes (one a second).
        time.sleep(4 * STRANDED_AFTER)
        assert stack.events(pinned_graph) == [] and run_status(stack, pinned) == "RUNNING"

        # v1 replaced by a new build id that nobody makes current: the documented rollout skipped.
        assert rollout.stop("stranded-v1") == 0
        stopped = time.monotonic()
        rollout.start("worker", "stranded-v2", WORKER_BUILD_ID="v2")
        warning = wait_until(lambda: logged(stack, "stranded-v2", "is not current"), timeout=ROUND_TRIP, interval=0.5,
                             message="v2 warns that it is not current")
        assert len(warning) == 1, warning
        assert f"worker version {rollout.deployment}:v2 is not current" in warning[0], warning
        assert "The current version is v1, with NO worker polling" in warning[0], warning
        assert f"temporal worker deployment set-current-version --deployment-name {rollout.deployment} --build-id v2 --yes" in warning[0]
        wait_until(lambda: "v2" in stack.temporal(lambda c: deployment.polling_build_ids(c, rollout.env["TEMPORAL_TASK_QUEUE"])),
                   timeout=ROUND_TRIP, interval=0.5, message="v2 polls")
        fresh_graph, fresh = rollout.submit_agent({"llm_config": {"model": "echo-stranded"}, "task": "hello"})

        # Each stranded node: one node.failed naming the version and what to do, then terminated.
        # Bounded: STRANDED_AFTER after v1 said it stopped (its shutdown heartbeat), plus a pass or two.
        event = stack.wait_event(pinned_graph, timeout=ROUND_TRIP)
        assert time.monotonic() - stopped < ROUND_TRIP
        assert event["type"] == "node.failed" and event["data"]["reported_by"] == "watchdog", event
        error = event["data"]["error"]
        assert error.startswith(f"stranded on worker version {rollout.deployment}:v1: pinned to it, and no worker of that version has polled"), error
        assert "`executor status`" in error and "executor rerun" in error, error
        assert event["data"]["workflow_id"] == pinned

        event = stack.wait_event(fresh_graph, timeout=ROUND_TRIP)
        assert event["type"] == "node.failed" and event["data"]["reported_by"] == "watchdog", event
        error = event["data"]["error"]
        assert error.startswith(f"no worker for the current version {rollout.deployment}:v1"), error
        assert "versions with workers now: v2" in error, error
        assert f"set-current-version --deployment-name {rollout.deployment} --build-id v2 --yes" in error, error
        assert event["data"]["workflow_id"] == fresh

        for graph, wid in ((pinned_graph, pinned), (fresh_graph, fresh)):
            wait_until(lambda wid=wid: run_status(stack, wid) == "TERMINATED", timeout=ROUND_TRIP, interval=0.5, message=f"{wid} terminated")
        # Terminated runs are closed runs too: the watchdog's next passes see their marker, no second report.
        time.sleep(3 * 1)  # an absence again: three passes of the closed-runs check after the terminations
        assert len(stack.events(pinned_graph)) == 1 and len(stack.events(fresh_graph)) == 1
        assert [r["build_id"] for r in runs_of(stack, pinned)] == ["v1"]  # v2 never ran it: it was not current
    finally:
        rollout.stop_all()
