"""Worker versioning and patches, the pure parts: build ids, the worker's deployment options,
patch ids, and the watchdog's words for a run failed by nondeterminism. The live behaviour (a
rollout, a deploy without versioning, `executor status`) is in tests/test_upgrades.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionFailedEventAttributes
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import VersioningBehavior

from adapters.settings import Settings
from core.errors import ContractError
from executor import deployment
from ingress.watchdog import closed_cause
from workflows import versioning

ROOT = Path(__file__).resolve().parents[1]


def copy_of_sources(tmp_path: Path) -> Path:
    for package in deployment.SOURCE_PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_default_build_id_is_the_package_version_and_changes_with_the_source(tmp_path: Path) -> None:
    root = copy_of_sources(tmp_path)
    before = deployment.default_build_id(root)
    assert before == deployment.default_build_id(root)  # stable: the same code is the same version
    assert before.startswith("0.1.0-") and len(before.split("-")[1]) == 12
    (root / "workflows" / "agent.py").write_text((root / "workflows" / "agent.py").read_text() + "\n# a change\n")
    assert deployment.default_build_id(root) != before


def test_the_worker_declares_its_version_pinned_by_default_or_none_when_versioning_is_off() -> None:
    config = deployment.deployment_config(Settings(worker_deployment_name="executors", worker_build_id="v7"))
    assert config is not None and config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("executors", "v7")
    assert config.default_versioning_behavior == VersioningBehavior.PINNED
    assert deployment.deployment_config(Settings.from_env({"WORKER_VERSIONING": "false"})) is None
    defaulted = deployment.worker_version(Settings())
    assert defaulted is not None and defaulted.build_id == deployment.default_build_id()


def test_a_deployment_name_with_a_dot_is_refused_naming_the_variable() -> None:
    with pytest.raises(ContractError, match="worker_deployment_name|WORKER_DEPLOYMENT_NAME"):
        Settings.from_env({"WORKER_DEPLOYMENT_NAME": "executor.v2"})


def test_an_undeclared_patch_id_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown patch id 'pause-before-lmm'"):
        versioning.patched("pause-before-lmm")
    assert versioning.PAUSE_BEFORE_LLM in versioning.PATCHES


def test_a_run_failed_by_nondeterminism_is_reported_as_such() -> None:
    message = "[TMPRL1100] Nondeterminism error: Timer machine does not handle this event: HistoryEvent(id: 19, ActivityTaskScheduled)"
    closing = HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        workflow_execution_failed_event_attributes=WorkflowExecutionFailedEventAttributes(failure=Failure(message=message)),
    )
    assert closed_cause(WorkflowExecutionStatus.FAILED, closing) == (
        "workflow failed: nondeterminism: its history does not match the deployed code (docs/upgrades.md): " + message
    )
