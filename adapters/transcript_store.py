"""Stored transcripts: an agent loop's `call_llm` input carries a reference plus what is new.

An agent loop re-sends its whole conversation with every model call. Were every `call_llm` input
the whole transcript, each one over the payload-storage threshold would be a new blob, and storage
would grow with the square of the loop. Instead, after each successful completion the activity
stores one chain node and returns its reference (`LlmReply.transcript`); the next request names
that reference and carries only the messages after it (the tool results). The activity rebuilds
the full message list and calls the provider exactly as before. docs/agent.md ("Transcripts").

A node is the call's own request and the assistant's reply, each encoded by the worker's data
converter: encrypted when encryption is on, and above `PAYLOAD_STORAGE_THRESHOLD` moved to the
payload store by content. The request is re-encoded from the value the activity received, so its
bytes equal the activity input's and its blob is the one already stored (no second copy). Its
`transcript` field names the parent node, so the chain needs no other link. The node record (the
two payloads as a `Payloads` message: small, or references to stored ones) lives in Redis under `executor:transcript:<sha256>`
with the payload-storage retention, content-addressed like the payloads: a retried or replayed
call stores nothing new.

A worker keeps the conversations it rebuilt in a small LRU cache: the worker that made the
previous call reads nothing from Redis. A node that is gone (expired, evicted, deleted) raises
`TranscriptUnavailable`; `call_llm` turns it into the non-retryable `TranscriptMissing` error,
and the agent loop then sends that call's whole conversation inline once (workflows/agent.py).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import redis.asyncio as redis
from temporalio.api.common.v1 import Payloads
from temporalio.converter import DataConverter

from adapters.payload_storage import StoredPayloadUnreadable
from core import keys
from core.step_io import LlmRequest, TranscriptRef

Messages = tuple[dict[str, Any], ...]
CACHED_CONVERSATIONS = 64  # per worker; each entry is a list of references to shared message dicts


class TranscriptUnavailable(RuntimeError):
    """A chain node, or a payload it refers to, is no longer stored (or does not add up)."""


class TranscriptStore:
    def __init__(self, redis_client: redis.Redis, converter: DataConverter, ttl_seconds: int, cache_size: int = CACHED_CONVERSATIONS):
        self._redis = redis_client
        self._converter = converter
        self._ttl = ttl_seconds
        self._cache: OrderedDict[str, Messages] = OrderedDict()
        self._cache_size = cache_size

    async def conversation(self, request: LlmRequest) -> list[dict[str, Any]]:
        """The request's whole message list: the stored transcript it names, then its messages."""
        if request.transcript is None:
            return list(request.messages)
        prefix = await self._messages(request.transcript)
        return [*prefix, *request.messages]

    async def save(self, request: LlmRequest, conversation: list[dict[str, Any]], reply: list[dict[str, Any]]) -> TranscriptRef:
        """Store the node of a finished call (`conversation`: the messages it sent, rebuilt)."""
        record = Payloads(payloads=await self._converter.encode([request, reply])).SerializeToString(deterministic=True)
        key = keys.transcript_node(hashlib.sha256(record).hexdigest())
        if not await self._redis.expire(key, self._ttl):  # already there (a retry, a twin loop): renewed
            await self._redis.set(key, record, nx=True, ex=self._ttl)
        whole = (*conversation, {"role": "assistant", "content": reply})
        self._remember(key, whole)
        return TranscriptRef(key=key, messages=len(whole))

    async def _messages(self, ref: TranscriptRef) -> Messages:
        """The node's conversation: from the cache, else read up the chain to a cached node or the root."""
        chain: list[tuple[str, LlmRequest, list[dict[str, Any]]]] = []
        key: str | None = ref.key
        while key is not None and key not in self._cache:
            request, reply = await self._read(key)
            chain.append((key, request, reply))
            key = request.transcript.key if request.transcript else None
        messages: Messages = self._cache[key] if key is not None else ()
        if key is not None:
            self._cache.move_to_end(key)
        for node_key, request, reply in reversed(chain):
            messages = (*messages, *request.messages, {"role": "assistant", "content": reply})
            self._remember(node_key, messages)
        if len(messages) != ref.messages:
            raise TranscriptUnavailable(f"transcript {ref.key} holds {len(messages)} messages, the request expects {ref.messages}")
        return messages

    async def _read(self, key: str) -> tuple[LlmRequest, list[dict[str, Any]]]:
        record = await self._redis.getex(key, ex=self._ttl)
        if record is None:
            raise TranscriptUnavailable(f"transcript node {key} is missing from Redis (expired or deleted)")
        node = Payloads()
        node.ParseFromString(record)
        try:
            request, reply = await self._converter.decode(list(node.payloads), [LlmRequest, list])
        except StoredPayloadUnreadable as err:
            raise TranscriptUnavailable(f"transcript node {key}: {err}") from err
        return request, reply

    def _remember(self, key: str, messages: Messages) -> None:
        self._cache[key] = messages
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

