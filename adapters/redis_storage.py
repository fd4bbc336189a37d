"""The Redis storage driver: payloads kept under `executor:payload:<sha256 of their bytes>`.

Content-addressed, so a payload is stored once however often it is encoded: every `call_llm` of an
agent loop re-encodes the transcript so far, and a replay (worker restart, cache eviction)
re-encodes every command. A store first renews the key's TTL (`EXPIRE`, which also says whether
the key exists) and sends the bytes (`SET … NX EX`) only for the keys that did not: an existing
blob costs a few bytes, not another upload. Both steps are one pipeline each for a batch.

A read renews the TTL too (`GETEX … EX`, Redis 6.2) and checks the bytes against the hash the key
names: a missing or corrupted blob raises `StoredPayloadUnreadable` naming the key. The released claim check (adapters/claim_check.py) used the same keys, so its blobs are read
here as well.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis.asyncio as redis
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriver, StorageDriverClaim, StorageDriverRetrieveContext, StorageDriverStoreContext

from adapters.payload_storage import REDIS_DRIVER, StoredPayloadUnreadable
from core import keys


class RedisStorageDriver(StorageDriver):
    def __init__(self, redis_client: redis.Redis, ttl_seconds: int):
        self._redis = redis_client
        self._ttl = ttl_seconds

    def name(self) -> str:
        return REDIS_DRIVER

    def type(self) -> str:
        return REDIS_DRIVER

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        blobs = [payload.SerializeToString() for payload in payloads]
        digests = [hashlib.sha256(blob).hexdigest() for blob in blobs]
        await self.put(dict(zip(digests, blobs)))
        return [StorageDriverClaim({"key": keys.claim_checked_payload(d), "sha256": d, "bytes": str(len(b))}) for d, b in zip(digests, blobs)]

    async def put(self, blobs: dict[str, bytes]) -> None:
        """Store blobs by their sha256: renew the ones already there, upload only the others."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in blobs:
                pipe.expire(keys.claim_checked_payload(digest), self._ttl)
            renewed = await pipe.execute()
        missing = [digest for digest, there in zip(blobs, renewed) if not there]
        if not missing:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in missing:
                pipe.set(keys.claim_checked_payload(digest), blobs[digest], nx=True, ex=self._ttl)
            await pipe.execute()

    async def retrieve(self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        blobs = await self.get([(claim.claim_data["key"], claim.claim_data["sha256"]) for claim in claims])
        payloads = []
        for blob in blobs:
            payload = Payload()
            payload.ParseFromString(blob)
            payloads.append(payload)
        return payloads

    async def get(self, wanted: Sequence[tuple[str, str]]) -> list[bytes]:
        """The blobs of `(key, sha256)` pairs, their TTLs renewed, each checked against its hash."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, _ in wanted:
                pipe.getex(key, ex=self._ttl)
            blobs = await pipe.execute()
        for (key, digest), blob in zip(wanted, blobs):
            if blob is None:
                raise StoredPayloadUnreadable(f"stored payload {key} is missing from Redis (expired or deleted)")
            actual = hashlib.sha256(blob).hexdigest()
            if actual != digest:
                raise StoredPayloadUnreadable(f"stored payload {key} is corrupted: its bytes hash to sha256 {actual}")
        return blobs
