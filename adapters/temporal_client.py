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
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from adapters import redis_client
from adapters.claim_check import ClaimCheckCodec
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
    """pydantic JSON payloads; above `CLAIM_CHECK_BYTES` they are kept in Redis (claim check)."""
    if not settings.claim_check_bytes:
        return pydantic_data_converter
    codec = ClaimCheckCodec(redis_client.connect(settings), settings.claim_check_bytes, settings.claim_check_ttl_seconds)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


async def connect(settings: Settings, **extra: Any) -> Client:
    return await Client.connect(**connect_options(settings), data_converter=data_converter(settings), **extra)
