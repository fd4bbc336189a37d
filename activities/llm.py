"""The LLM step: one completion by the node's provider, as a Messages-format reply.

Providers (activities/providers/): `anthropic`, `bedrock` and `vertex` through the `anthropic`
SDK's clients, `openai` (any OpenAI-compatible endpoint) through the `openai` SDK. Which ones a
worker serves is the operator's choice (`LLM_PROVIDER`, the default, plus `LLM_PROVIDERS`); a node
picks one by `llm_config.provider`, which reaches this step inside the model name
(`provider:model`, core/node_config.py `qualified_model`) so the workflow code stays as it is.
A provider the worker does not serve fails the node at once, naming it: never a silent fallback.

Clients are built once per worker with `max_retries=0`: Temporal owns retries, so each one is an
attempt in the history. Keys live in the clients, read from the worker's environment; they never
enter workflow inputs, history or logs. A worker with no credential for a provider still runs
everything else, but a call to that provider fails at once naming the missing key, instead of
sending a request the provider can only answer with a 401.

Agent loops send a transcript reference plus the new messages (`LlmRequest.transcript`): the
conversation is rebuilt here from the stored chain, and each call stores its own node and returns
its reference (adapters/transcript_store.py, docs/agent.md "Transcripts").

Cost: each reply's `usage.cost_usd` is estimated from the worker's price table
(activities/providers/pricing.py); a model without a price has none (omitted, not 0).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import RedisError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import Provider
from activities.providers.anthropic_api import AnthropicProvider
from activities.providers.anthropic_api import build_client as build_anthropic_client
from activities.providers.openai_api import OpenAIProvider
from activities.providers.openai_api import build_client as build_openai_client
from activities.providers.pricing import PriceTable
from adapters.metrics import Metrics
from adapters.settings import Settings
from adapters.transcript_store import TranscriptStore, TranscriptUnavailable
from core.failures import LLM_BAD_RESPONSE, LLM_REJECTED, fail
from core.node_config import split_model
from core.step_io import TRANSCRIPT_MISSING, LlmReply, LlmRequest, TranscriptRef

log = logging.getLogger(__name__)


class LlmProviders:
    """The providers one worker serves, by name; `default` answers models that name none."""

    def __init__(self, providers: dict[str, Provider], default: str):
        self._providers = providers
        self.default = default

    @property
    def names(self) -> list[str]:
        return list(self._providers)

    def pick(self, qualified: str) -> tuple[Provider, str]:
        """The provider and the bare model name of a (possibly `provider:`-qualified) model."""
        name, model = split_model(qualified)
        provider = self._providers.get(name or self.default)
        if provider is None:
            raise fail(
                LLM_REJECTED,
                f"LLM provider {name!r} is not configured on this worker (it serves {', '.join(self._providers)}; see LLM_PROVIDERS)",
            )
        return provider, model

    def without_credentials(self) -> list[Provider]:
        return [p for p in self._providers.values() if not p.has_credentials()]

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()


def build_providers(settings: Settings) -> LlmProviders:
    """One client per configured provider, built once per worker (a configuration error, such as
    Vertex without a region, stops the worker at start with the reason)."""
    providers: dict[str, Provider] = {}
    for name in settings.enabled_providers():
        if name == "openai":
            providers[name] = OpenAIProvider(*build_openai_client(settings))
        else:
            providers[name] = AnthropicProvider(name, build_anthropic_client(settings, name), caching=settings.prompt_caching)
    return LlmProviders(providers, settings.llm_provider)


class LlmActivities:
    def __init__(
        self,
        providers: LlmProviders,
        metrics: Metrics | None = None,
        known_models: set[str] | None = None,
        prices: PriceTable | None = None,
        transcripts: TranscriptStore | None = None,
    ):
        self._providers = providers
        self._transcripts = transcripts  # None: no stored transcripts (a request naming one is answered TranscriptMissing)
        self._metrics = metrics or Metrics()
        self._known_models = known_models or set()
        self._prices = prices or PriceTable.load(None)

    def _label(self, model: str) -> str:
        """Work items choose the model: only models the operator named become metric labels."""
        return model if model in self._known_models else "other"

    @activity.defn(name="call_llm")
    async def call_llm(self, request: LlmRequest) -> LlmReply:
        """One completion; the reply's content blocks are Messages-API blocks whatever the provider."""
        began = time.monotonic()
        label = self._label(request.model)
        provider_name = split_model(request.model)[0] or self._providers.default
        try:
            provider, model = self._providers.pick(request.model)
            if not provider.has_credentials():
                raise fail(LLM_REJECTED, provider.missing_credentials())  # final: the same worker would send it unsigned again
            conversation = await self._conversation(request)
            reply = await provider.complete(request.model_copy(update={"messages": conversation, "transcript": None}), model)
            if not reply.content and reply.stop_reason not in ("end_turn", "max_tokens", "stop_sequence"):
                raise fail(LLM_BAD_RESPONSE, f"LLM reply has no content (stop_reason {reply.stop_reason})")
        except ApplicationError as err:
            self._metrics.llm(label, "error", time.monotonic() - began, provider=provider_name)
            self._metrics.error("llm", err.type or "unknown")
            raise
        usage = reply.usage.model_copy(update={"cost_usd": self._prices.cost(provider.name, model, reply.usage)})
        self._metrics.llm(
            label, "ok", time.monotonic() - began, usage.input_tokens, usage.output_tokens,
            provider=provider.name, cache_read=usage.cache_read_input_tokens,
            cache_creation=usage.cache_creation_input_tokens, cost_usd=usage.cost_usd,
        )
        log.info(
            "llm %s %s: stop %s, %s in / %s out tokens (cache %s read, %s written), cost %s",
            provider.name, reply.model, reply.stop_reason, usage.input_tokens, usage.output_tokens,
            usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
            "unknown" if usage.cost_usd is None else f"${usage.cost_usd:.6f}",
        )
        transcript = await self._keep(request, conversation, reply.content) if request.keep_transcript else None
        return reply.model_copy(update={"usage": usage, "transcript": transcript})

    async def _keep(self, request: LlmRequest, conversation: list[dict[str, Any]], reply: list[dict[str, Any]]) -> TranscriptRef | None:
        """Store the transcript after a finished call; when that fails, return the reply without a
        reference (the next call sends the whole conversation inline) rather than fail the
        activity, whose retry would pay for the model call again."""
        if self._transcripts is None:
            return None
        try:
            return await self._transcripts.save(request, conversation, reply)
        except (RedisError, OSError) as exc:
            log.warning("transcript not stored (the next call sends it inline): %s", exc)
            return None

    async def _conversation(self, request: LlmRequest) -> list[dict[str, Any]]:
        """The whole message list: a stored transcript the request names, then its own messages."""
        if request.transcript is None:
            return request.messages
        if self._transcripts is None:
            raise ApplicationError("this worker keeps no transcripts: send the conversation inline", type=TRANSCRIPT_MISSING, non_retryable=True)
        try:
            return await self._transcripts.conversation(request)
        except TranscriptUnavailable as err:  # the loop resends the whole conversation once
            raise ApplicationError(str(err), type=TRANSCRIPT_MISSING, non_retryable=True) from err
