"""Claim check: payloads larger than a threshold are kept in Redis, and Temporal stores a small
readable reference instead (`{"claim_check": "executor:payload:<sha256>", "bytes": 412345}`).

Big tool results and long agent transcripts would otherwise grow every history event that carries
them toward Temporal's payload and history limits. The codec runs in every process that talks to
Temporal (worker, ingress, CLI), so workflow code never sees the difference. Content-addressed:
the same payload is stored once, and its key names its hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import redis.asyncio as redis
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from core import keys

ENCODING = b"json/claim-check"


class ClaimCheckMissing(RuntimeError):
    """The stored payload is gone (expired, or Redis lost it): the history cannot be decoded."""


class ClaimCheckCodec(PayloadCodec):
    def __init__(self, redis_client: redis.Redis, threshold_bytes: int, ttl_seconds: int):
        self._redis = redis_client
        self._threshold = threshold_bytes
        self._ttl = ttl_seconds

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            raw = payload.SerializeToString()
            if len(raw) <= self._threshold:
                out.append(payload)
                continue
            key = keys.claim_checked_payload(hashlib.sha256(raw).hexdigest())
            await self._redis.set(key, raw, ex=self._ttl)
            reference = {"claim_check": key, "bytes": len(raw)}
            out.append(Payload(metadata={"encoding": ENCODING}, data=json.dumps(reference).encode()))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            key = json.loads(payload.data)["claim_check"]
            raw = await self._redis.get(key)
            if raw is None:
                raise ClaimCheckMissing(f"claim-checked payload {key} is no longer in Redis")
            await self._redis.expire(key, self._ttl)  # still in use: keep it as long again
            restored = Payload()
            restored.ParseFromString(raw)
            out.append(restored)
        return out
