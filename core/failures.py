"""Failure types of our steps, named once. Retry behaviour is data: the workflow's policies list
the non-retryable types below, and every activity raises `ApplicationError` with one of them.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

# Not retryable: the same input would fail the same way.
NODE_CONFIG = "NodeConfigError"  # bad config, unknown template variable, missing graph state
LLM_REJECTED = "LlmRequestRejected"  # 400/401/403/404/413/422: the provider refused the request
LLM_BAD_RESPONSE = "LlmBadResponse"  # a reply we cannot use (empty, malformed)
UNKNOWN_TOOL = "UnknownTool"  # no configured server offers it
TOOL_NOT_ALLOWED = "ToolNotAllowed"  # outside the node's `tools` list
TOOL_ARGUMENTS = "InvalidToolArguments"  # arguments that break the tool's schema

NON_RETRYABLE = [NODE_CONFIG, LLM_REJECTED, LLM_BAD_RESPONSE, UNKNOWN_TOOL, TOOL_NOT_ALLOWED, TOOL_ARGUMENTS]

# Retryable: the provider or server may recover (rate limits, overload, 5xx, network).
LLM_UNAVAILABLE = "LlmUnavailable"
TOOL_UNAVAILABLE = "ToolServerUnavailable"


def fail(kind: str, message: str) -> ApplicationError:
    """An error of a named kind; non-retryable when the kind is listed above as such."""
    return ApplicationError(message, type=kind, non_retryable=kind in NON_RETRYABLE)
