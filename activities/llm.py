"""The LLM step: one Messages API call with the real `anthropic` async client.

The client is built once per worker with `max_retries=0`: Temporal owns retries, so each one is
an attempt in the history. The API key lives in the client, read from the worker's environment
(`LLM_API_KEY`, else the SDK's own `ANTHROPIC_API_KEY` and other credentials); it never enters
workflow inputs, history or logs. A worker with no credential at all still runs tool nodes, but
an LLM call fails at once with a message naming the missing key, instead of sending a request the
provider can only answer with a 401.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import anthropic
import httpx2
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.failures import LLM_BAD_RESPONSE, LLM_REJECTED, LLM_UNAVAILABLE, fail
from activities.heartbeat import heartbeating
from adapters.settings import Settings
from adapters.metrics import Metrics
from core.step_io import LlmReply, LlmRequest, Usage

log = logging.getLogger(__name__)

# Retried: the provider may recover. 408 timeout, 409 conflict, 429 rate limit, 5xx, 529 overload.
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def build_client(settings: Settings) -> anthropic.AsyncAnthropic:
    """One client per worker. Its connection pool bounds the LLM calls in flight, so it is sized
    like the worker's activity slots: a loop waiting on the model holds one connection."""
    limits = httpx2.Limits(max_connections=settings.llm_max_connections, max_keepalive_connections=min(settings.llm_max_connections, 100))
    return anthropic.AsyncAnthropic(
        api_key=settings.llm_key() or None,  # None: the SDK looks for its own credentials
        base_url=settings.llm_base_url or None,
        max_retries=0,
        timeout=settings.llm_timeout,
        http_client=anthropic.DefaultAsyncHttpxClient(limits=limits),
    )


NO_KEY = "LLM request not sent: LLM_API_KEY is not set on this worker (nor ANTHROPIC_API_KEY)"


def has_credentials(client: anthropic.AsyncAnthropic) -> bool:
    """Whether the client found a key, a token or a credentials provider to authenticate with."""
    return any(value is not None for value in (client.api_key, client.auth_token, client.credentials))


def _retry_after(headers: Any) -> float | None:
    """The provider's `retry-after` (seconds) or `retry-after-ms`, when it sent one."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


def classify(exc: anthropic.APIError) -> ApplicationError:
    """Map an SDK error to a retryable or final failure carrying the provider's message."""
    if isinstance(exc, anthropic.APIStatusError):
        message = f"{exc.status_code} {exc.api_message or exc.message}"
        if exc.status_code in RETRYABLE_STATUS:
            delay = _retry_after(exc.response.headers)
            return ApplicationError(
                f"LLM provider unavailable: {message}",
                type=LLM_UNAVAILABLE,
                next_retry_delay=None if delay is None else _seconds(delay),
            )
        return fail(LLM_REJECTED, f"LLM request rejected: {message}")
    if isinstance(exc, anthropic.APIConnectionError):  # includes timeouts
        return ApplicationError(f"LLM provider unreachable: {exc.message}", type=LLM_UNAVAILABLE)
    return fail(LLM_BAD_RESPONSE, f"LLM response unusable: {exc.message}")


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=min(max(value, 0.0), 300.0))


class LlmActivities:
    def __init__(self, client: anthropic.AsyncAnthropic, metrics: Metrics | None = None, known_models: set[str] | None = None):
        self._client = client
        self._metrics = metrics or Metrics()
        self._known_models = known_models or set()
        self._has_credentials = has_credentials(client)

    def _label(self, model: str) -> str:
        """Work items choose the model: only models the operator named become metric labels."""
        return model if model in self._known_models else "other"

    @activity.defn(name="call_llm")
    async def call_llm(self, request: LlmRequest) -> LlmReply:
        """One completion; the reply's content blocks are kept as the API returned them."""
        kwargs: dict[str, Any] = dict(
            model=request.model,
            max_tokens=request.max_tokens,
            messages=request.messages,
            # This SDK generation has no `temperature` argument; the API still takes the field.
            extra_body={"temperature": request.temperature},
        )
        if request.system:
            kwargs["system"] = request.system
        if request.tools:
            kwargs["tools"] = request.tools
        began = time.monotonic()
        try:
            if not self._has_credentials:
                raise fail(LLM_REJECTED, NO_KEY)  # final: the same worker would send it unsigned again
            try:
                async with heartbeating():
                    response = await self._client.messages.create(**kwargs)
            except anthropic.APIError as exc:
                raise classify(exc) from None
            except ValueError as exc:  # the SDK lets a body that is not JSON through as a decode error
                raise fail(LLM_BAD_RESPONSE, f"LLM response unusable: not JSON ({exc})") from None
        except ApplicationError as err:
            self._metrics.llm(self._label(request.model), "error", time.monotonic() - began)
            self._metrics.error("llm", err.type or "unknown")
            raise
        content = [block.model_dump(exclude_none=True) for block in response.content or []]
        if not content and response.stop_reason not in ("end_turn", "max_tokens", "stop_sequence"):
            raise fail(LLM_BAD_RESPONSE, f"LLM reply has no content (stop_reason {response.stop_reason})")
        usage = response.usage
        self._metrics.llm(
            self._label(request.model), "ok", time.monotonic() - began,
            (usage.input_tokens or 0) if usage else 0, (usage.output_tokens or 0) if usage else 0,
        )
        log.info(
            "llm %s: stop %s, %s in / %s out tokens",
            response.model,
            response.stop_reason,
            usage.input_tokens if usage else "?",
            usage.output_tokens if usage else "?",
        )
        return LlmReply(
            model=response.model or request.model,
            content=content,
            stop_reason=response.stop_reason,
            usage=Usage(
                input_tokens=(usage.input_tokens or 0) if usage else 0,
                output_tokens=(usage.output_tokens or 0) if usage else 0,
            ),
        )
