"""Claude through the `anthropic` SDK: Anthropic's API, Amazon Bedrock or Google Vertex AI.

The three clients share the Messages resource, its request and reply shapes and its errors, so
one class serves them; only how each is built (and authenticated) differs:
- anthropic: `LLM_API_KEY` (when it is `LLM_PROVIDER`) or the SDK's `ANTHROPIC_API_KEY`;
- bedrock: AWS's usual credential chain (env, profile, instance role), `AWS_REGION`;
  `ANTHROPIC_BEDROCK_BASE_URL` (or `LLM_BASE_URL` when it is `LLM_PROVIDER`) for a VPC endpoint;
- vertex: Google's Application Default Credentials, `CLOUD_ML_REGION`, `ANTHROPIC_VERTEX_PROJECT_ID`.
Credentials never leave the worker's environment. Clients use `max_retries=0`: Temporal retries.
"""

from __future__ import annotations

from typing import Any

import anthropic
import google.auth.exceptions
import httpx2

from activities.heartbeat import heartbeating
from activities.providers.errors import status_failure, unreachable
from activities.providers.prompt_cache import with_breakpoints
from adapters.settings import Settings
from core.errors import ContractError
from core.failures import LLM_BAD_RESPONSE, LLM_REJECTED, fail
from core.step_io import LlmReply, LlmRequest, Usage

AnthropicClient = anthropic.AsyncAnthropic | anthropic.AsyncAnthropicBedrock | anthropic.AsyncAnthropicVertex


def _http_client(settings: Settings) -> httpx2.AsyncClient:
    """Sized like the worker's activity slots: a loop waiting on the model holds one connection."""
    limits = httpx2.Limits(max_connections=settings.llm_max_connections, max_keepalive_connections=min(settings.llm_max_connections, 100))
    return anthropic.DefaultAsyncHttpxClient(limits=limits)


def build_client(settings: Settings, kind: str = "anthropic") -> AnthropicClient:
    """One client per worker and provider. `LLM_BASE_URL` / `LLM_API_KEY` belong to `LLM_PROVIDER`."""
    default = settings.llm_provider == kind
    base_url = (settings.llm_base_url if default else None) or None  # None: the SDK's own variable, else its default
    common: dict[str, Any] = dict(base_url=base_url, max_retries=0, timeout=settings.llm_timeout, http_client=_http_client(settings))
    try:
        if kind == "bedrock":
            return anthropic.AsyncAnthropicBedrock(**common)
        if kind == "vertex":
            return anthropic.AsyncAnthropicVertex(**common)
    except ValueError as exc:  # e.g. no region: a configuration error, said at start
        raise ContractError(f"LLM provider {kind}: {exc}") from None
    key = settings.llm_key() if default else settings.anthropic_api_key.get_secret_value()
    return anthropic.AsyncAnthropic(api_key=key or None, **common)  # None: the SDK looks for its own credentials


class AnthropicProvider:
    def __init__(self, name: str, client: AnthropicClient, caching: bool = True):
        self.name = name
        self._client = client
        self._caching = caching  # PROMPT_CACHING: cache breakpoints on every request (prompt_cache.py)

    def has_credentials(self) -> bool:
        if isinstance(self._client, anthropic.AsyncAnthropic):
            return any(value is not None for value in (self._client.api_key, self._client.auth_token, self._client.credentials))
        return True  # AWS and Google resolve theirs on the first call; a failure is reported then

    def missing_credentials(self) -> str:
        if self.name == "anthropic":
            return "LLM request not sent: LLM_API_KEY is not set on this worker (nor ANTHROPIC_API_KEY)"
        return f"LLM request not sent: no credentials for provider {self.name}"

    async def complete(self, request: LlmRequest, model: str) -> LlmReply:
        system: str | list[dict[str, Any]] | None = request.system
        tools, messages = request.tools, request.messages
        if self._caching:
            # An agent loop's request (it keeps its transcript), or any with a conversation so far.
            conversation = request.keep_transcript or request.transcript is not None or len(request.messages) > 1
            system, tools, messages = with_breakpoints(request.system, request.tools, request.messages, conversation=conversation)
        kwargs: dict[str, Any] = dict(
            model=model,
            max_tokens=request.max_tokens,
            messages=messages,
            # This SDK generation has no `temperature` argument; the API still takes the field.
            extra_body={"temperature": request.temperature},
        )
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = tools
        try:
            async with heartbeating():
                response = await self._client.messages.create(**kwargs)
        except anthropic.APIStatusError as exc:
            raise status_failure(exc.status_code, _message(exc), exc.response.headers) from None
        except anthropic.APIConnectionError as exc:  # includes timeouts
            raise unreachable(exc.message) from None
        except anthropic.APIError as exc:
            raise fail(LLM_BAD_RESPONSE, f"LLM response unusable: {exc.message}") from None
        except google.auth.exceptions.DefaultCredentialsError as exc:  # vertex: no ADC on this worker
            raise fail(LLM_REJECTED, f"LLM request not sent: no Google credentials for provider vertex ({exc})") from None
        except google.auth.exceptions.RefreshError as exc:  # vertex: the token endpoint refused or failed
            raise unreachable(f"Google token refresh failed for provider vertex: {exc}") from None
        except RuntimeError as exc:  # bedrock / vertex: "Could not resolve AWS credentials from session", …
            if "credentials" not in str(exc) and "token" not in str(exc):
                raise
            raise fail(LLM_REJECTED, f"LLM request not sent: provider {self.name}: {exc}") from None
        except ValueError as exc:  # the SDK lets a body that is not JSON through as a decode error
            raise fail(LLM_BAD_RESPONSE, f"LLM response unusable: not JSON ({exc})") from None
        content = [block.model_dump(exclude_none=True) for block in response.content or []]
        usage = response.usage
        return LlmReply(
            model=response.model or model,
            content=content,
            stop_reason=response.stop_reason,
            usage=Usage(
                input_tokens=(usage.input_tokens or 0) if usage else 0,
                output_tokens=(usage.output_tokens or 0) if usage else 0,
                cache_creation_input_tokens=(getattr(usage, "cache_creation_input_tokens", None) or 0) if usage else 0,
                cache_read_input_tokens=(getattr(usage, "cache_read_input_tokens", None) or 0) if usage else 0,
            ),
        )

    async def close(self) -> None:
        await self._client.close()


def _message(exc: anthropic.APIStatusError) -> str:
    """The provider's own words: Anthropic's `error.message`, Bedrock's top-level `message`."""
    if exc.api_message:
        return exc.api_message
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message
