"""The watchdog's reading of a history, as pure functions over hand-built history events: which
cause a `node.failed` names, and since when a workflow task has been failing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus

from adapters.settings import Settings
from core.errors import ContractError
from ingress.watchdog import closed_cause, task_failure


def event(kind: EventType.ValueType, at: int = 0, **attributes: object) -> HistoryEvent:
    e = HistoryEvent(event_type=kind, **attributes)
    e.event_time.FromSeconds(1_800_000_000 + at)
    return e


def terminated(reason: str = "", identity: str = "") -> HistoryEvent:
    return event(
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        workflow_execution_terminated_event_attributes={"reason": reason, "identity": identity},
    )


def test_terminated_names_who_and_why() -> None:
    assert closed_cause(WorkflowExecutionStatus.TERMINATED, terminated("deploy rollback", "ops@laptop")) == (
        "workflow terminated by ops@laptop: deploy rollback"
    )
    assert closed_cause(WorkflowExecutionStatus.TERMINATED, terminated()) == "workflow terminated: no reason given"


def test_failed_timed_out_and_cancelled_runs_name_their_ending() -> None:
    failed = event(
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        workflow_execution_failed_event_attributes={"failure": {"message": "bad config"}},
    )
    assert closed_cause(WorkflowExecutionStatus.FAILED, failed) == "workflow failed: bad config"
    timed_out = event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)
    assert closed_cause(WorkflowExecutionStatus.TIMED_OUT, timed_out) == "workflow timed out (its Temporal execution or run timeout)"
    cancelled = event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED)
    assert closed_cause(WorkflowExecutionStatus.CANCELED, cancelled) == "workflow cancelled before it emitted a result"


def test_a_closing_event_of_another_kind_still_names_the_status() -> None:
    assert closed_cause(WorkflowExecutionStatus.TERMINATED, None) == "workflow terminated: no reason given"


def wft_failed(at: int, message: str = "", cause: int = 0) -> HistoryEvent:
    return event(
        EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, at,
        workflow_task_failed_event_attributes={"cause": cause, "failure": {"message": message}},
    )


def test_task_failure_is_the_newest_task_outcome_when_it_failed() -> None:
    newest_first = [
        event(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, 30),  # arrived while the task was failing
        wft_failed(20, "[TMPRL1100] Nondeterminism error: activity type mismatch"),
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 19),
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 10),
        wft_failed(5, "an older streak"),
    ]
    failure = task_failure(newest_first)
    assert failure is not None
    assert failure.since == datetime.fromtimestamp(1_800_000_020, UTC)
    assert failure.cause == "[TMPRL1100] Nondeterminism error: activity type mismatch"


def test_a_completed_task_after_the_failure_means_not_stuck() -> None:
    assert task_failure([event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 30), wft_failed(20, "old")]) is None
    assert task_failure([event(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, 30)]) is None


def test_task_failure_without_a_message_names_the_cause_and_timeouts_their_kind() -> None:
    cause = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
    failure = task_failure([wft_failed(3, cause=cause)])
    assert failure is not None and failure.cause == "workflow task failed: non deterministic error"
    timed_out = event(
        EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, 4,
        workflow_task_timed_out_event_attributes={"timeout_type": TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE},
    )
    failure = task_failure([timed_out])
    assert failure is not None and failure.cause == "workflow task timed out (start to close): the worker never answered"


def test_lookback_must_stay_inside_the_emitted_marker_ttl() -> None:
    """Past the marker's TTL a closed run that did emit would look as if it had not."""
    with pytest.raises(ContractError, match="WATCHDOG_LOOKBACK .* must be shorter than EMITTED_MARKER_TTL_SECONDS"):
        Settings.from_env({"WATCHDOG_LOOKBACK": "700000", "EMITTED_MARKER_TTL_SECONDS": "604800"})
    settings = Settings.from_env({"WATCHDOG_INTERVAL": "0", "STUCK_AFTER": "120"})
    assert settings.watchdog_interval == 0 and settings.stuck_after == 120


async def test_an_encrypted_failure_is_reported_with_its_own_message() -> None:
    """With payload encryption on, a failure's message travels encrypted ("Encoded failure" in
    the history); the watchdog reads it through the data converter before it reports."""
    import base64

    from temporalio.exceptions import ApplicationError

    from adapters.temporal_client import data_converter
    from ingress.watchdog import readable

    converter = data_converter(Settings.from_env({"ENCRYPTION_KEYS": "k1=" + base64.b64encode(bytes(32)).decode()}))
    failed = event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)
    await converter.encode_failure(ApplicationError("[TMPRL1100] Nondeterminism error: timer 3 vs activity"), failed.workflow_execution_failed_event_attributes.failure)
    stuck = event(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
    await converter.encode_failure(ApplicationError("stored payload executor:payload:ab is missing"), stuck.workflow_task_failed_event_attributes.failure)
    assert closed_cause(WorkflowExecutionStatus.FAILED, failed) == "workflow failed: Encoded failure"  # what the raw history says

    assert "nondeterminism" in closed_cause(WorkflowExecutionStatus.FAILED, await readable(failed, converter))
    assert "timer 3 vs activity" in closed_cause(WorkflowExecutionStatus.FAILED, failed)
    found = task_failure([await readable(stuck, converter)])
    assert found is not None and found.cause == "stored payload executor:payload:ab is missing"
