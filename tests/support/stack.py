"""A real stack for tests: Temporal dev server, redis-server, scripted LLM, MCP servers of ours,
and the worker and ingress as real processes (so a test can SIGKILL and restart them)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from executor.local_services import Proc, free_port, start_redis, start_temporal, wait_for_port
from doubles.scripted_llm import ScriptedLLM
from tests.support.providers import provider_env

ROOT = Path(__file__).resolve().parents[2]
MCP_SERVER = ROOT / "tests" / "support" / "mcp_server.py"
# Published servers, run unmodified: mcp-server-time (PyPI, stdio) and server-everything (npm, HTTP)
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
EVERYTHING = ROOT / "tests" / "published_mcp" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
COMPLETED = "dago:events:node.completed"
FAILED = "dago:events:node.failed"
DEAD = "executor.work.dead"
WORK = "executor.work"
ORCHESTRATOR_WORK = "dago:events:executor.work"
API_KEY = "sk-test-" + uuid.uuid4().hex
MCP_HEADER_SECRET = "hdr-secret-" + uuid.uuid4().hex
MCP_ENV_SECRET = "env-secret-" + uuid.uuid4().hex


@dataclass
class Stack:
    tmp: Path
    log: IO[str]
    llm: ScriptedLLM
    temporal_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    mcp_http_port: int = field(default_factory=free_port)
    everything_port: int = field(default_factory=free_port)
    task_queue: str = field(default_factory=lambda: f"tests-{uuid.uuid4().hex[:6]}")
    procs: dict[str, Proc] = field(default_factory=dict)
    ports: dict[str, dict[str, int]] = field(default_factory=dict)  # per service: health, metrics
    extra_env: dict[str, str] = field(default_factory=dict)
    redis_server: str = "embedded"  # or "floor": the oldest Redis we support (executor/local_services.py)
    code_root: Path = ROOT  # the checkout whose worker and ingress run (a release's, to record its histories)

    # -- processes -------------------------------------------------------------------------
    def start_infra(self, *, temporal_db: bool = False, ui_port: int | None = None, codec_endpoint: str | None = None) -> None:
        """Temporal (with its Web UI on `ui_port` when given, decoding through `codec_endpoint`), Redis and the MCP servers."""
        self.procs["temporal"] = start_temporal(
            self.tmp / "temporal" if temporal_db else None,
            port=self.temporal_port, ui_port=ui_port or free_port(), sink=self.log, headless=ui_port is None,
            codec_endpoint=codec_endpoint,
        )
        self.procs["redis"] = start_redis(self.tmp / "redis", port=self.redis_port, sink=self.log, server=self.redis_server)
        self.procs["mcp-http"] = Proc("mcp-http", self.mcp_http_argv(), env=self.env(), sink=self.log)
        wait_for_port(self.mcp_http_port, proc=self.procs["mcp-http"])
        self.procs["everything"] = Proc(
            "everything", ["node", str(EVERYTHING), "streamableHttp"], env={**os.environ, "PORT": str(self.everything_port)}, sink=self.log
        )
        wait_for_port(self.everything_port, proc=self.procs["everything"])

    def mcp_http_argv(self) -> list[str]:
        return [sys.executable, str(MCP_SERVER), "--http", "--port", str(self.mcp_http_port)]

    def mcp_config(self) -> Path:
        """The desktop clients' format; the stdio server gets its env from here, not from us."""
        path = self.tmp / "mcp.json"
        if not path.exists():
            env = {"MCP_CALL_LOG": str(self.mcp_log), "MCP_GATE_DIR": str(self.tmp), "MCP_TOKEN": MCP_ENV_SECRET}
            config = {"mcpServers": {
                "stdio": {"command": sys.executable, "args": [str(MCP_SERVER)], "env": env},
                "secured": {"url": f"http://127.0.0.1:{self.mcp_http_port}/mcp", "headers": {"Authorization": f"Bearer {MCP_HEADER_SECRET}"}},
                "time": {"command": str(TIME_SERVER), "args": ["--local-timezone", "UTC"]},
            }}
            path.write_text(json.dumps(config))
        return path

    @property
    def mcp_log(self) -> Path:
        return self.tmp / "mcp-calls.jsonl"

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "REDIS_ADDR": f"127.0.0.1:{self.redis_port}",
            "LLM_BASE_URL": self.llm.base_url,
            "LLM_API_KEY": API_KEY,
            "LLM_MODEL": "echo-default",
            "MCP_SERVERS": f"http=http://127.0.0.1:{self.mcp_http_port}/mcp,everything=http://127.0.0.1:{self.everything_port}/mcp",
            "MCP_CONFIG": str(self.mcp_config()),
            "MCP_CALL_LOG": str(self.mcp_log),
            "MCP_GATE_DIR": str(self.tmp),
            "LOG_LEVEL": "info",
            "INGRESS_BLOCK_MS": "200",
            "CONTINUE_AS_NEW_EVENTS": "60",
            **provider_env(self.tmp, self.llm.base_url),  # openai, bedrock, vertex beside the default anthropic
            "WORKER_BUILD_ID": "tests",  # one version however the tree changes during a session (docs/upgrades.md)
            **self.extra_env,
            **overrides,
        }

    def start_service(self, kind: str, name: str | None = None, **env: str) -> Proc:
        name = name or kind
        ports = self.ports.setdefault(name, {"health": free_port(), "metrics": free_port()})
        env = {"HEALTH_PORT": str(ports["health"]), "METRICS_PORT": str(ports["metrics"]), **env}
        # `faulty-worker`: the worker with fault points armed by EXECUTOR_FAULTS (doubles/faults.py)
        # `upgraded-worker`: the worker with NodeWorkflow's changed version 2 (tests/support/upgraded_worker.py)
        test_entries = {"faulty-worker": "tests.support.faulty_worker", "upgraded-worker": "tests.support.upgraded_worker"}
        argv = [sys.executable, "-m", test_entries[kind]] if kind in test_entries else [sys.executable, "-m", "executor", kind]
        proc = Proc(name, argv, env=self.env(WORKER_ID=name, **env), sink=self.log, cwd=str(self.code_root))
        self.procs[name] = proc
        return proc

    def http_get(self, service: str, path: str) -> tuple[int, str]:
        """GET on a service's health port: (status, body); (0, reason) when nothing answers."""
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.ports[service]['health']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def restart(self, name: str, *, kill: bool = True) -> Proc:
        old = self.procs[name]
        old.kill() if kill else old.stop()
        kind = "worker" if name.startswith("worker") else "ingress"
        return self.start_service(kind, name)

    def stop_all(self) -> None:
        for name in ("ingress", *[n for n in self.procs if n.startswith("worker")], "mcp-http", "everything", "redis", "temporal"):
            if name in self.procs:
                self.procs.pop(name).stop()
        for proc in list(self.procs.values()):
            proc.stop()

    # -- Redis ------------------------------------------------------------------------------
    @property
    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True)

    def submit(self, doc: Any, stream: str = WORK) -> str:
        data = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
        return self.redis.xadd(stream, {"data": data})

    def submit_node(self, config: dict[str, Any], *, graph_id: str | None = None, node_id: str = "n1", **extra: Any) -> tuple[str, str]:
        graph_id = graph_id or f"g-{uuid.uuid4().hex[:10]}"
        self.submit({"graph_id": graph_id, "node_id": node_id, "node_type": "executor", "config": config, **extra})
        return graph_id, node_id

    def submit_agent(self, config: dict[str, Any], **kw: Any) -> tuple[str, str, str]:
        """An agent node with an envelope id, so its workflow id is known before it finishes."""
        event_id = str(uuid.uuid4())
        graph, node = self.submit_node(config, id=event_id, **kw)
        return graph, node, f"node:{graph}:{node}:{event_id}"

    def gate(self, name: str) -> Path:
        """A file that holds the test MCP server's `gate` tool while it exists."""
        path = self.tmp / name
        path.touch()
        return path

    def events(self, graph_id: str, node_id: str | None = None) -> list[dict[str, Any]]:
        found = []
        for stream in (COMPLETED, FAILED):
            for _, fields in self.redis.xrange(stream):
                event = json.loads(fields["data"])
                if event.get("graph_id") == graph_id and (node_id is None or event.get("node_id") == node_id):
                    found.append(event)
        return found

    def wait_event(self, graph_id: str, node_id: str = "n1", timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events(graph_id, node_id)
            if events:
                return events[0]
            time.sleep(0.05)
        raise AssertionError(f"no result event for {graph_id}/{node_id} within {timeout}s")

    def settle(self, graph_id: str, node_id: str = "n1", seconds: float = 1.0) -> list[dict[str, Any]]:
        """Wait for the first event, then a little more, and return all events (doubles show up)."""
        self.wait_event(graph_id, node_id)
        time.sleep(seconds)
        return self.events(graph_id, node_id)

    def pending(self, stream: str = WORK, group: str = "executor-workers") -> int:
        try:
            return self.redis.xpending(stream, group)["pending"]
        except redis.ResponseError:
            return 0

    def unacked(self, stream: str = WORK, group: str = "executor-workers") -> int:
        """Entries not acknowledged: pending ones plus those not yet delivered to the group."""
        [info] = [g for g in self.redis.xinfo_groups(stream) if g["name"] == group]
        undelivered = len(self.redis.xrange(stream, f"({info['last-delivered-id']}", "+"))
        return self.pending(stream, group) + undelivered

    def dead_letters(self) -> list[dict[str, str]]:
        """Dead-letter entries, decoded leniently (they may hold bytes that are not UTF-8)."""
        raw = redis.Redis(port=self.redis_port).xrange(DEAD)
        return [{k.decode(): v.decode(errors="replace") for k, v in fields.items()} for _, fields in raw]

    def mcp_calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        if not self.mcp_log.exists():
            return []
        calls = [json.loads(line) for line in self.mcp_log.read_text().splitlines() if line.strip()]
        return [c for c in calls if tool is None or c["tool"] == tool]

    # -- Temporal ---------------------------------------------------------------------------
    def query(self, workflow_id: str, name: str) -> Any:
        """A workflow query; None while the workflow does not exist yet."""
        return _query(self, workflow_id, name)

    def temporal(self, coro_fn: Any) -> Any:
        """Run `coro_fn(client)` with a fresh Temporal client (sync tests stay sync)."""

        async def run() -> Any:
            from adapters.settings import Settings
            from adapters.temporal_client import connect

            client = await connect(Settings.from_env(self.env()))  # the services' settings: their keys and stores
            return await coro_fn(client)

        return asyncio.run(run())


def _query(stack: Stack, workflow_id: str, name: str) -> Any:
    from temporalio.service import RPCError

    async def run(client: Any) -> Any:
        try:
            return await client.get_workflow_handle(workflow_id).query(name)
        except RPCError as exc:  # not started yet: the ingress has not got to it
            if "not found" in str(exc):
                return None
            raise

    return stack.temporal(run)


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll until `predicate` holds. The timeout is generous on purpose: on a busy 2-core machine a
    step that takes 1 s alone can take 20; a condition that holds costs only the time it needs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout}s")


def run_stack(
    tmp: Path,
    log: IO[str],
    llm: ScriptedLLM,
    *,
    temporal_db: bool = False,
    ui_port: int | None = None,
    redis_server: str = "embedded",
    codec_endpoint: str | None = None,
    **extra_env: str,
) -> Iterator[Stack]:
    stack = Stack(tmp=tmp, log=log, llm=llm, extra_env=extra_env, redis_server=redis_server)
    try:
        stack.start_infra(temporal_db=temporal_db, ui_port=ui_port, codec_endpoint=codec_endpoint)
        stack.start_service("worker")
        stack.start_service("ingress")
        yield stack
    finally:
        stack.stop_all()
