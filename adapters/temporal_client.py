"""The Temporal client, built in one place for the worker, the ingress and the CLI.

Connection settings come the way every Temporal tool takes them: an environment-configuration
profile (`TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`) and the standard variables
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`), with our
settings as the fallback. Payloads use the pydantic converter so our models cross as JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from adapters import encryption, payload_storage, redis_client, s3_storage
from adapters.claim_check import ClaimCheckDecoder
from adapters.redis_storage import RedisStorageDriver
from adapters.settings import Settings


def connect_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    options.setdefault("target_host", settings.temporal_address)
    options.setdefault("namespace", settings.temporal_namespace)
    return options


def runtime(settings: Settings) -> Runtime:
    """The SDK runtime; with `METRICS_PORT` it serves Prometheus metrics (SDK's and ours)."""
    if not settings.metrics_port:
        return Runtime(telemetry=TelemetryConfig())
    prometheus = PrometheusConfig(bind_address=f"0.0.0.0:{settings.metrics_port}", durations_as_seconds=True)
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


def data_converter(settings: Settings) -> DataConverter:
    """pydantic JSON payloads; with keys configured, encrypted (adapters/encryption.py), failure
    messages included; above `PAYLOAD_STORAGE_THRESHOLD` they leave the history for the store
    `PAYLOAD_STORAGE` names (adapters/payload_storage.py), after encryption."""
    codecs: list[PayloadCodec] = []
    converter = pydantic_data_converter
    ring = encryption.key_ring(settings)
    if ring is not None:
        codecs.append(encryption.EncryptionCodec(ring))
        converter = dataclasses.replace(converter, failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
    blobs = RedisStorageDriver(redis_client.connect(settings), payload_storage.retention_seconds(settings))
    codecs.append(ClaimCheckDecoder(blobs))  # decode-only: the released claim check's references in histories
    converter = dataclasses.replace(converter, external_storage=payload_storage.external_storage(settings, blobs, s3_storage.driver(settings)))
    return dataclasses.replace(converter, payload_codec=codecs[0] if len(codecs) == 1 else encryption.CodecChain(codecs))


async def connect(settings: Settings, **extra: Any) -> Client:
    return await Client.connect(**connect_options(settings), data_converter=data_converter(settings), **extra)
