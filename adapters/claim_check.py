"""The released claim check, decode-only: histories written before payload storage moved to the
SDK's `ExternalStorage` (adapters/payload_storage.py) hold references of this form:

    encoding json/claim-check, data {"claim_check": "executor:payload:<sha256>", "bytes": 412345}

Workflows started by that release may still be running after an upgrade, and their histories
replay on every cache miss: this codec turns such a reference back into the payload (read like
any blob of the Redis driver, which uses the same keys: TTL renewed, hash checked). It never
writes one, and leaves every other payload untouched. Last in the codec chain (after encryption),
so it decodes first: the released payloads were not encrypted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from adapters.payload_storage import StoredPayloadUnreadable
from adapters.redis_storage import RedisStorageDriver

ENCODING = b"json/claim-check"

ClaimCheckMissing = StoredPayloadUnreadable  # the released name, still caught by `rerun` and the watchdog


class ClaimCheckDecoder(PayloadCodec):
    def __init__(self, blobs: RedisStorageDriver):
        self._blobs = blobs

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = list(payloads)
        references = {i: json.loads(p.data)["claim_check"] for i, p in enumerate(payloads) if p.metadata.get("encoding") == ENCODING}
        if references:
            # the key names the sha256 of the bytes it holds (core/keys.py)
            wanted = [(key, key.rpartition(":")[2]) for key in references.values()]
            for i, blob in zip(references, await self._blobs.get(wanted)):
                out[i] = Payload()
                out[i].ParseFromString(blob)
        return out
