"""LLM providers: one small interface, one implementation per API family.

`anthropic`, `bedrock` and `vertex` speak the Messages API through the `anthropic` SDK's own
clients (AsyncAnthropic, AsyncAnthropicBedrock, AsyncAnthropicVertex); `openai` speaks Chat
Completions through the `openai` SDK, translating to and from the Messages format of our
transcripts (openai_messages.py). Every provider raises the same failure types (core/failures.py),
so the workflow's retry policy is the same whoever answers.

Which providers exist on a worker is the operator's choice (`LLM_PROVIDER`, `LLM_PROVIDERS`); the
clients are built once per worker by `build_providers` and keep their credentials to themselves.
"""

from __future__ import annotations

from typing import Protocol

from core.step_io import LlmReply, LlmRequest


class Provider(Protocol):
    name: str

    def has_credentials(self) -> bool:
        """Whether a call can be signed at all (else it fails at once, naming what is missing)."""
        ...

    def missing_credentials(self) -> str:
        """The message of a call refused for want of credentials."""
        ...

    async def complete(self, request: LlmRequest, model: str) -> LlmReply:
        """One completion of `request` by `model`, as a Messages-format reply (cost not filled in).
        Raises `ApplicationError` of our failure types (core/failures.py)."""
        ...

    async def close(self) -> None: ...
