"""OpenTelemetry tracing through the Temporal SDK's plugin: off by default, on by the standard
OTel variables (`OTEL_TRACES_EXPORTER=otlp|console`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`). Spans follow a node from the
ingress's start through the workflow and each activity, in whichever process runs them."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def enabled(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def plugins(service: str) -> list[Any]:
    """Client plugins (workers built on the client inherit them): empty when tracing is off."""
    if not enabled():
        return []
    import opentelemetry.trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    from temporalio.contrib.opentelemetry import OpenTelemetryPlugin, create_tracer_provider

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"dago-executor-{service}"})
    provider = create_tracer_provider(resource=resource)
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    opentelemetry.trace.set_tracer_provider(provider)
    log.info("OpenTelemetry tracing on (%s)", os.environ.get("OTEL_TRACES_EXPORTER") or "otlp")
    return [OpenTelemetryPlugin(add_temporal_spans=True)]  # spans for start, run, each activity


def shutdown() -> None:
    """Flush spans before the process exits (it exits without running atexit hooks)."""
    if not enabled():
        return
    import opentelemetry.trace

    provider = opentelemetry.trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
