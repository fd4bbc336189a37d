"""Any OpenAI-compatible Chat Completions endpoint through the official `openai` SDK: OpenAI,
Ollama, vLLM, llama.cpp's server, LiteLLM, OpenRouter. Native function calling (parallel calls
included: they arrive as several `tool_calls` and become several `tool_use` blocks).

The transcript stays in Messages format (openai_messages.py translates both ways). The client is
built once per worker with `max_retries=0` (Temporal retries); its endpoint and key come from the
operator's settings only (`LLM_BASE_URL`/`LLM_API_KEY` when openai is `LLM_PROVIDER`, else
`OPENAI_BASE_URL`/`OPENAI_API_KEY`), never from a work item.
"""

from __future__ import annotations

import httpx2
import openai

from activities.heartbeat import heartbeating
from activities.providers import openai_messages
from activities.providers.errors import status_failure, unreachable
from adapters.settings import Settings
from core.failures import LLM_BAD_RESPONSE, fail
from core.step_io import LlmReply, LlmRequest, Usage

NO_KEY = (
    "LLM request not sent: no key for provider openai (LLM_API_KEY when LLM_PROVIDER=openai, else OPENAI_API_KEY); "
    "a local server without authentication takes any value"
)


def build_client(settings: Settings) -> tuple[openai.AsyncOpenAI, bool]:
    """The client, and whether a key was configured (without one every call is refused at once)."""
    default = settings.llm_provider == "openai"
    key = (settings.llm_api_key.get_secret_value() if default else "") or settings.openai_api_key.get_secret_value()
    base_url = (settings.llm_base_url if default else None) or settings.openai_base_url or None
    limits = httpx2.Limits(max_connections=settings.llm_max_connections, max_keepalive_connections=min(settings.llm_max_connections, 100))
    client = openai.AsyncOpenAI(
        api_key=key or "not-configured",  # never sent: has_credentials() stops the call first
        base_url=base_url,
        max_retries=0,
        timeout=settings.llm_timeout,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )
    return client, bool(key)


class OpenAIProvider:
    name = "openai"

    def __init__(self, client: openai.AsyncOpenAI, has_key: bool):
        self._client = client
        self._has_key = has_key

    def has_credentials(self) -> bool:
        return self._has_key

    def missing_credentials(self) -> str:
        return NO_KEY

    async def complete(self, request: LlmRequest, model: str) -> LlmReply:
        arguments = openai_messages.chat_request(
            model=model, messages=request.messages, system=request.system, tools=request.tools,
            temperature=request.temperature, max_tokens=request.max_tokens,
        )
        try:
            async with heartbeating():
                completion = await self._client.chat.completions.create(**arguments)
        except openai.APIStatusError as exc:
            raise status_failure(exc.status_code, _message(exc), exc.response.headers) from None
        except openai.APIConnectionError as exc:  # includes timeouts
            raise unreachable(exc.message) from None
        except openai.APIError as exc:
            raise fail(LLM_BAD_RESPONSE, f"LLM response unusable: {exc.message}") from None
        except ValueError as exc:  # a body that is not JSON
            raise fail(LLM_BAD_RESPONSE, f"LLM response unusable: not JSON ({exc})") from None
        data = completion.model_dump()
        try:
            content, stop_reason = openai_messages.reply_blocks(data)
        except openai_messages.UnusableReply as exc:
            raise fail(LLM_BAD_RESPONSE, f"LLM response unusable: {exc}") from None
        return LlmReply(
            model=completion.model or model,
            content=content,
            stop_reason=stop_reason,
            usage=Usage(**openai_messages.usage_counts(data.get("usage"))),
        )

    async def close(self) -> None:
        await self._client.close()


def _message(exc: openai.APIStatusError) -> str:
    """The provider's own words: `error.message` of the body, else the SDK's summary."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message
