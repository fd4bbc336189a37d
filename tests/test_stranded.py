"""Nodes stranded on a worker version nobody serves, the pure parts (ingress/stranded.py and the
worker's warning in executor/deployment.py): when a version counts as served, since when it has not
been, which version a run is on, and the words of the warning and of the node.failed. The live
behaviour is tests/test_upgrades.py::test_nodes_stranded_on_a_version_without_workers_get_one_node_failed_naming_it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.workflow.v1 import DeploymentVersionTransition, VersioningOverride, WorkflowExecutionVersioningInfo

from executor.deployment import not_current_warning
from ingress.stranded import POLL_WINDOW, Poller, UnservedClock, effective_build, listed_build, pinned_cause, served_until, unstarted_cause

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_worker_counts_as_polling_for_a_poll_window_after_its_last_poll_began() -> None:
    # An idle live worker's newest poll may have begun a minute ago: it is still waiting in it.
    served = served_until([Poller("v1", "w1@a", T0), Poller("v1", "w2@b", T0 + timedelta(seconds=20)), Poller("v2", "w3@c", T0)], {})
    assert served == {"v1": T0 + timedelta(seconds=20) + POLL_WINDOW, "v2": T0 + POLL_WINDOW}
    assert POLL_WINDOW > timedelta(seconds=70)  # longer than the SDK's long poll


def test_a_worker_that_said_it_stopped_stops_counting_at_once_but_not_a_restarted_one() -> None:
    stopped = {"w1@a": T0 + timedelta(seconds=5)}  # its shutdown heartbeat, after its last poll
    assert served_until([Poller("v1", "w1@a", T0)], stopped) == {"v1": T0 + timedelta(seconds=5)}
    # Its last poll may reach the server a moment after the heartbeat was stamped: still stopped.
    late = T0 + timedelta(seconds=5, milliseconds=4)
    assert served_until([Poller("v1", "w1@a", late)], stopped) == {"v1": T0 + timedelta(seconds=5)}
    # The same identity polled again after that shutdown: a new process, polling.
    restarted = T0 + timedelta(seconds=30)
    assert served_until([Poller("v1", "w1@a", restarted)], stopped) == {"v1": restarted + POLL_WINDOW}


def test_the_clock_says_since_when_a_version_has_had_no_worker() -> None:
    clock = UnservedClock()
    now = T0 + timedelta(minutes=10)
    # v1 polled until 30 s ago, v2 is being served, v3 has no poller listed at all (first seen now).
    served = {"v1": now - timedelta(seconds=30), "v2": now + timedelta(seconds=60)}
    assert clock.unserved_for(["v1", "v2", "v3"], served, now) == {"v1": 30.0, "v2": 0.0, "v3": 0.0}
    # Later the server has forgotten v1's pollers: the clock still counts from their last poll.
    later = now + timedelta(seconds=100)
    assert clock.unserved_for(["v1", "v2", "v3"], {"v2": later + timedelta(seconds=1)}, later) == {"v1": 130.0, "v2": 0.0, "v3": 100.0}
    # A worker of v3 comes back: served again, and its clock starts over when it goes.
    assert clock.unserved_for(["v1", "v3"], {"v3": later + timedelta(seconds=5)}, later)["v3"] == 0.0
    assert "v3" not in clock.since
    # Versions no longer holding nodes are forgotten.
    clock.unserved_for(["v3"], {}, later)
    assert set(clock.since) == {"v3"}


def test_the_version_a_run_is_on_override_first_none_while_unstarted_or_moving() -> None:
    on_v1 = WorkflowExecutionVersioningInfo(deployment_version=WorkerDeploymentVersion(deployment_name="d", build_id="v1"))
    assert effective_build(on_v1) == "v1"
    assert effective_build(WorkflowExecutionVersioningInfo()) is None
    moved = WorkflowExecutionVersioningInfo(
        deployment_version=WorkerDeploymentVersion(deployment_name="d", build_id="v1"),
        versioning_override=VersioningOverride(pinned=VersioningOverride.PinnedOverride(version=WorkerDeploymentVersion(deployment_name="d", build_id="v2"))),
    )
    assert effective_build(moved) == "v2"
    moving = WorkflowExecutionVersioningInfo(
        deployment_version=WorkerDeploymentVersion(deployment_name="d", build_id="v1"),
        version_transition=DeploymentVersionTransition(deployment_version=WorkerDeploymentVersion(deployment_name="d", build_id="v2")),
    )
    assert effective_build(moving) is None


def test_the_reports_name_the_version_and_what_to_do() -> None:
    pinned = pinned_cause("dago", "v1", 612.4, ["v2"], "v2")
    assert pinned.startswith("stranded on worker version dago:v1: pinned to it, and no worker of that version has polled for 612s")
    assert "(versions with workers now: v2 (current))" in pinned and "`executor status`" in pinned and "`executor rerun`" in pinned
    unstarted = unstarted_cause("dago", "v1", 601, ["v2", "v1"], "v1")
    assert unstarted.startswith("no worker for the current version dago:v1: new nodes go to it")
    assert "temporal worker deployment set-current-version --deployment-name dago --build-id v2 --yes" in unstarted
    assert "no version of the deployment has workers now" in pinned_cause("dago", "v1", 700, [], None)


def test_the_warning_of_a_worker_whose_version_is_not_current() -> None:
    stranded = not_current_warning("dago", "v2", "v1", 0)
    assert stranded == (
        "worker version dago:v2 is not current: it gets no work until it is. The current version is v1, with NO worker polling: "
        "its running nodes and every new node wait (the watchdog fails them after STRANDED_AFTER). To make this version current: "
        "temporal worker deployment set-current-version --deployment-name dago --build-id v2 --yes (docs/upgrades.md section 2)"
    )
    assert "The current version is v1, with 3 workers polling." in not_current_warning("dago", "v2", "v1", 3)
    assert "has no current version: no node runs until one is made current" in not_current_warning("dago", "v2", None, 0)


def test_a_run_counts_as_never_started_only_while_its_first_task_waits_for_a_worker() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from temporalio.api.enums.v1 import PendingWorkflowTaskState
    from temporalio.api.workflow.v1 import PendingWorkflowTaskInfo
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse

    from ingress.stranded import waiting_since

    scheduled = Timestamp()
    scheduled.FromDatetime(T0)

    def described(state: int) -> DescribeWorkflowExecutionResponse:
        return DescribeWorkflowExecutionResponse(pending_workflow_task=PendingWorkflowTaskInfo(state=state, scheduled_time=scheduled))  # type: ignore[arg-type]

    waiting = described(PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED)
    assert waiting_since(waiting, T0 + timedelta(seconds=1))
    assert not waiting_since(waiting, T0 - timedelta(seconds=1))  # scheduled only just now
    assert not waiting_since(described(PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED), T0 + timedelta(seconds=1))
    assert not waiting_since(DescribeWorkflowExecutionResponse(), T0 + timedelta(seconds=1))  # nothing pending: a served run waiting


def test_the_version_of_a_listed_run_comes_from_its_search_attribute() -> None:
    # What the dev server's visibility returns for a run pinned to dago:v1.
    listed = {"TemporalWorkerDeploymentVersion": ["dago:v1"], "TemporalWorkerDeployment": ["dago"], "BuildIds": ["pinned:dago:v1"]}
    assert listed_build(listed, "dago") == "v1"
    assert listed_build({"TemporalWorkerDeploymentVersion": ["dago:1.2.0-ab:c"]}, "dago") == "1.2.0-ab:c"
    assert listed_build(listed, "other") is None  # another deployment's run
    assert listed_build({}, "dago") is None  # not started by any versioned worker
