"""S3 payload storage: the SDK's own driver (temporalio.contrib.aws.s3driver) on a boto3 client.

The SDK ships a client for aioboto3, which is not among our dependencies; its driver takes any
`S3StorageDriverClient`, so this one runs boto3's blocking calls in threads (`put_object`,
`head_object`, `get_object`: one request each, no multipart below S3's 5 GiB single-PUT limit).
The driver keys blobs by namespace, workflow (or activity) and the sha256 of their bytes, uploads
only the ones not there yet (`HeadObject` first), and checks the hash on every read.

Two of its errors are made ours: a missing object and a hash mismatch raise
`StoredPayloadUnreadable` naming the key, like the Redis driver (adapters/payload_storage.py says
where that surfaces).

Retention is the bucket's lifecycle rule, not ours: objects cannot be renewed on read, but each
is keyed by its run, so an expiration of `retention_seconds` (adapters/payload_storage.py) in
whole days after creation covers the run (docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from adapters.payload_storage import StoredPayloadUnreadable
from adapters.settings import Settings

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class Boto3S3Client(S3StorageDriverClient):
    def __init__(self, client: Any):
        self._client = client

    def describe(self) -> Mapping[str, str]:
        return {"endpoint": self._client.meta.endpoint_url, "region": self._client.meta.region_name or ""}

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._client.put_object, Bucket=bucket, Key=key, Body=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        try:
            await asyncio.to_thread(self._client.head_object, Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return False
            raise

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        def read() -> bytes:
            return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()

        return await asyncio.to_thread(read)


class S3PayloadStorage(S3StorageDriver):
    """The SDK's driver, with a missing or corrupted object reported as `StoredPayloadUnreadable`."""

    async def retrieve(self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        try:
            return await super().retrieve(context, claims)
        except RuntimeError as exc:  # the driver wraps the client's error
            if isinstance(exc.__cause__, ClientError) and _error_code(exc.__cause__) in _NOT_FOUND:
                raise StoredPayloadUnreadable(f"stored payload {_where(exc)} is missing from S3 (expired or deleted)") from exc
            raise
        except ValueError as exc:  # its integrity check (or a claim without a hash)
            raise StoredPayloadUnreadable(f"stored payload is corrupted: {exc}") from exc


def driver(settings: Settings) -> S3PayloadStorage | None:
    """The S3 driver when `PAYLOAD_STORAGE_S3_BUCKET` is set (credentials and region: boto3's
    usual environment, profile or instance role)."""
    if not settings.payload_storage_s3_bucket:
        return None
    import boto3  # here: a second of imports every process would pay without S3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60)
    client = boto3.client("s3", endpoint_url=settings.payload_storage_s3_endpoint or None, config=config)
    return S3PayloadStorage(client=Boto3S3Client(client), bucket=settings.payload_storage_s3_bucket)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _where(exc: RuntimeError) -> str:
    """`bucket=…, key=…` from the driver's message (`S3StorageDriver retrieve failed [bucket=…, key=…, …]`)."""
    found = re.search(r"bucket=[^,\]]*, key=[^,\]]*", str(exc))
    return found.group(0) if found else str(exc)
