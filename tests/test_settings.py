"""Settings from the environment, and the configuration reference that documents each."""

from __future__ import annotations

import pytest

from adapters.settings import Settings
from core.errors import ContractError


def test_settings_from_environment_with_readable_errors() -> None:
    s = Settings.from_env(
        {"WORK_STREAMS": "a, b", "REPORT_FAILURES_ON_COMPLETED": "true", "LOG_LEVEL": "WARN", "LLM_API_KEY": "k"}
    )
    assert s.work_streams == ["a", "b"] and s.report_failures_on_completed and s.log_level == "warn"
    assert "k" not in repr(s.llm_api_key)
    assert s.result_stream("failed") == s.completed_stream
    with pytest.raises(ContractError, match="configuration: max_iterations"):
        Settings.from_env({"MAX_ITERATIONS": "0"})


def test_configuration_reference_documents_every_setting() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in doc]
    assert not missing, f"undocumented settings: {missing}"


def test_workflow_sandbox_passes_our_workflow_code_through_unless_full() -> None:
    """`passthrough` (the default) imports workflows/ once per process; `full` re-imports it in
    every run's sandbox. The time-skipping and replay tests run the full sandbox, which is where
    a non-deterministic call in workflow code is caught (docs/configuration.md WORKFLOW_SANDBOX)."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from executor.worker import workflow_runner

    shipped, full = workflow_runner(Settings()), workflow_runner(Settings(workflow_sandbox="full"))
    assert isinstance(shipped, SandboxedWorkflowRunner) and isinstance(full, SandboxedWorkflowRunner)
    assert "workflows" in shipped.restrictions.passthrough_modules
    assert "workflows" not in full.restrictions.passthrough_modules
