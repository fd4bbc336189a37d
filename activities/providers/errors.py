"""Provider errors as our failure types, the same rules for every SDK: 408/409/429/5xx and
network errors are retried (honouring the provider's `retry-after`), other 4xx are final."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.exceptions import ApplicationError

from core.failures import LLM_REJECTED, LLM_UNAVAILABLE, fail

# Retried: the provider may recover. 408 timeout, 409 conflict, 429 rate limit, 5xx, 529 overload.
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def retry_after(headers: Any) -> float | None:
    """The provider's `retry-after` (seconds) or `retry-after-ms`, when it sent one."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


def status_failure(status: int, message: str, headers: Any) -> ApplicationError:
    """An HTTP error answer of the provider: retryable with its delay, or final."""
    text = f"{status} {message}"
    if status in RETRYABLE_STATUS:
        delay = retry_after(headers)
        return ApplicationError(
            f"LLM provider unavailable: {text}",
            type=LLM_UNAVAILABLE,
            next_retry_delay=None if delay is None else timedelta(seconds=min(max(delay, 0.0), 300.0)),
        )
    return fail(LLM_REJECTED, f"LLM request rejected: {text}")


def unreachable(message: str) -> ApplicationError:
    return ApplicationError(f"LLM provider unreachable: {message}", type=LLM_UNAVAILABLE)
