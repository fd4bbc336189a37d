"""Timeouts and retry policies per kind of step, defined once.

LLM calls and tool calls differ: an LLM call may wait long on a busy provider and is worth many
patient retries; a tool call is usually quick and is retried a few times. Non-retryable error
types come from `core.failures`, named after the failure they describe. The numbers an
operator may tune (`StepTimeouts`) arrive as data from the resolve step, so workflow code stays
deterministic and a replay sees the values the run used.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from temporalio.common import RetryPolicy

from core.failures import NON_RETRYABLE
from core.step_io import StepTimeouts

class StepOptions(TypedDict, total=False):
    """The options of one kind of step, as `workflow.execute_activity_method` takes them."""

    start_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


# Reading graph state: Redis may be restarting; config errors are final at once.
RESOLVE = StepOptions(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=20,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)

# The result event must reach the orchestrator: keep trying through a Redis outage. The step is
# idempotent (emitted-marker), so retries can never double the event.
EMIT = StepOptions(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=0,  # unlimited
    ),
)


def _call(seconds: float, heartbeat: float, first_retry: float, attempts: int) -> StepOptions:
    return StepOptions(
        start_to_close_timeout=timedelta(seconds=seconds),
        heartbeat_timeout=timedelta(seconds=heartbeat),
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=first_retry),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=60),
            maximum_attempts=attempts,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    )


def llm(t: StepTimeouts) -> StepOptions:
    """One Messages API call. 429/529/5xx/network are retried with backoff (the activity passes
    the provider's retry-after as the next delay); 4xx rejections are final."""
    return _call(t.llm_seconds, t.heartbeat_seconds, first_retry=1.0, attempts=t.llm_attempts)


def tool(t: StepTimeouts) -> StepOptions:
    """One tool call on an MCP server (or the built-in calculator). A crashed server is
    reconnected by the pool and the call retried; a tool's own error result is not an exception."""
    return _call(t.tool_seconds, t.heartbeat_seconds, first_retry=0.5, attempts=t.tool_attempts)
