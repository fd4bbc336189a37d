"""The worker process: hosts NodeWorkflow and every activity; any number share a task queue.

Clients are built once here and injected into the activity classes. SIGTERM and Ctrl-C stop
polling, let in-flight activities finish within the grace period, then close the clients.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Sequence
from datetime import timedelta

from temporalio.worker import Interceptor, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import NondeterminismError

from activities.emit import EmitActivities
from activities.llm import LlmActivities, build_providers
from activities.providers.pricing import PriceTable
from activities.mcp_pool import McpPool
from adapters.mcp_config import configured_servers
from activities.resolve import ResolveActivities
from activities.tools import ToolActivities
from adapters import encryption, payload_storage, redis_client, search_attributes, temporal_client, tracing
from adapters.transcript_store import TranscriptStore
from adapters.settings import Settings
from adapters.health import HealthServer
from executor import deployment
from adapters.metrics import Metrics
from workflows.node import NodeWorkflow

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN = timedelta(seconds=30)


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """Temporal's sandbox: `full` re-imports the workflow modules for every run, so a
    non-deterministic call in them (the clock, randomness, I/O) fails the task instead of
    corrupting a replay; `passthrough` imports them once per process and shares them between runs
    (less CPU per new or replayed run), the checks left to the test suite, which runs the
    workflow's branches in both step shapes (tests/test_node_workflow.py, tests/test_agent_loop.py)
    and replays the recorded histories (tests/test_replay.py) under the full sandbox."""
    if settings.workflow_sandbox == "passthrough":
        return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))
    return SandboxedWorkflowRunner()


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_worker(
    settings: Settings, stop: asyncio.Event, interceptors: Sequence[Interceptor] = (), workflows: Sequence[type] = (NodeWorkflow,)
) -> None:
    """Poll until `stop`. `interceptors` let tests arm fault points (doubles/faults.py); `workflows`
    lets the upgrade tests run a changed NodeWorkflow (tests/support/upgraded_worker.py)."""
    runtime = temporal_client.runtime(settings)
    client = await temporal_client.connect(settings, runtime=runtime, plugins=tracing.plugins("worker"))
    metrics = Metrics(runtime.metric_meter)
    redis = redis_client.connect(settings)
    llm = build_providers(settings)
    for provider in llm.without_credentials():
        if provider.name == settings.llm_provider == "anthropic":
            log.warning("LLM_API_KEY is not set: llm and agent nodes will fail (tool nodes run); set it, or ANTHROPIC_API_KEY, and restart")
        else:
            log.warning("LLM provider %s has no credentials: its llm and agent nodes will fail (%s)", provider.name, provider.missing_credentials())
    if encryption.key_ring(settings) is None:
        log.warning("payload encryption is off: prompts, tool results and answers are stored in plaintext in Temporal's history (and claim-checked blobs); set ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE (docs/security.md)")
    pool = McpPool(configured_servers(settings.mcp_servers, settings.mcp_config), read_timeout=settings.tool_timeout, connect_timeout=settings.mcp_connect_timeout)
    resolve = ResolveActivities(redis, settings, await search_attributes.registered(client, settings.temporal_namespace))
    llm_activities = LlmActivities(llm, metrics, known_models={settings.llm_model, *settings.llm_models}, prices=PriceTable.load(settings.llm_prices_file),
        transcripts=TranscriptStore(redis, client.data_converter, payload_storage.retention_seconds(settings), settings.transcript_cache_size),
    )
    tools = ToolActivities(pool, timeout=settings.tool_timeout, metrics=metrics)
    emit = EmitActivities(redis, settings, metrics)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=list(workflows),
        activities=[resolve.resolve_node, llm_activities.call_llm, tools.call_tool, tools.describe_tools, emit.emit_result],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        max_concurrent_activities=settings.worker_max_activities,
        max_cached_workflows=settings.worker_max_cached_workflows,
        workflow_runner=workflow_runner(settings),
        identity=f"{settings.worker_id}@{socket.gethostname()}",
        interceptors=interceptors,
        deployment_config=deployment.deployment_config(settings),
        # A run whose history no longer matches the code fails (the watchdog reports it as
        # node.failed naming the nondeterminism) instead of retrying its task for ever.
        workflow_failure_exception_types=[NondeterminismError],
    )
    version = deployment.worker_version(settings)
    log.info(
        "worker %s polling %s on %s (namespace %s); MCP servers: %s",
        settings.worker_id,
        settings.temporal_task_queue,
        settings.temporal_address,
        settings.temporal_namespace,
        ", ".join(pool.servers) or "none",
    )
    log.info("worker version: %s", version.to_canonical_string() if version else "unversioned (WORKER_VERSIONING=false)")
    async def polling() -> None:
        if not worker.is_running:
            raise RuntimeError("worker is not polling")

    checks = {"temporal": client.service_client.check_health, "redis": redis.ping, "worker": polling}
    try:
        async with HealthServer(settings.health_port, checks, settings.metrics_port):
            # Probes answer (not ready) while Redis is awaited; a server below the floor ends the process.
            log.info("Redis at %s: %s", settings.redis_addr, await redis_client.require_supported(redis, settings, stop))
            async with worker:
                if version is not None and settings.worker_become_current == "if-none":
                    current = await deployment.become_current_if_none(client, version, stop)
                    log.info("worker deployment %s: current version %s", version.deployment_name, current)
                if version is not None and not stop.is_set():  # a version nobody made current gets no work: say so
                    await deployment.warn_if_not_current(client, version, settings.temporal_task_queue)
                await stop.wait()
                log.info("worker stopping: draining in-flight activities (up to %s)", GRACEFUL_SHUTDOWN)
    finally:
        await pool.close()
        await llm.close()
        await redis.aclose()
        tracing.shutdown()
    log.info("worker stopped")
