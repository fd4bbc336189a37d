"""The benchmark's own services: Temporal dev server, Redis, the LLM server, and the worker and
ingress processes (`python -m executor worker|ingress`, configured by environment variables).

Every phase gets its own task queue and work stream, so a phase never sees another's workflows.
Everything started here is stopped by `close()`, which `runner` calls in a `finally`.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from executor.local_services import (
    SEARCH_ATTRIBUTES,
    Proc,
    free_port,
    start_redis,
    start_temporal,
    temporal_binary,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[1]
COMPLETED = "dago:events:node.completed"
FAILED = "dago:events:node.failed"
API_KEY = "sk-bench-" + uuid.uuid4().hex[:12]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def system_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Service:
    """A worker or ingress of one phase."""

    kind: str
    proc: Proc
    task_queue: str
    stream: str


@dataclass
class BenchStack:
    tmp: Path
    log: IO[str]
    temporal_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    llm_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    temporal: Proc | None = None  # the main dev server (start_infra)

    # -- infrastructure ----------------------------------------------------------------------
    def start_infra(self) -> None:
        """The dev server exactly as `make run` and the tests start it (in memory, with
        `history.transferProcessorMaxPollRPS=1000`), Redis, the LLM server."""
        self.temporal = start_temporal(None, port=self.temporal_port, ui_port=free_port(), sink=self.log, headless=True)
        self.procs.append(self.temporal)
        self.procs.append(start_redis(self.tmp / "redis", port=self.redis_port, sink=self.log))
        proc = self.spawn("llm", [sys.executable, "-m", "bench.llm_server", "--port", str(self.llm_port)])
        wait_for_port(self.llm_port, proc=proc)

    def start_stock_temporal(self, name: str, dynamic_config: dict[str, str] | None = None) -> tuple[Proc, str]:
        """A stock `temporal server start-dev` (in memory, our search attributes), without the
        `--dynamic-config-value` that `executor.local_services.start_temporal` always adds: the dev server
        as it was before, for reference. Extra `dynamic_config` values are passed as given."""
        port = free_port()
        argv = [
            temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--ui-port", str(free_port()), "--log-level", "warn", "--headless",
        ]
        for attr, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{attr}={kind}"]
        for key, value in (dynamic_config or {}).items():
            argv += ["--dynamic-config-value", f"{key}={value}"]
        proc = self.spawn(name, argv, env=dict(os.environ))
        wait_for_port(port, timeout=60, proc=proc)
        return proc, f"127.0.0.1:{port}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env=env or self.base_env(), sink=self.log, cwd=str(ROOT))
        self.procs.append(proc)
        return proc

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def llm_url(self) -> str:
        return f"http://127.0.0.1:{self.llm_port}"

    def base_env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}

    def env(self, task_queue: str, stream: str, llm_url: str, **overrides: str) -> dict[str, str]:
        """What `Stack.env` of the tests sets, minus the MCP servers (the bench uses `calculate`)."""
        return {
            **self.base_env(),
            "TEMPORAL_ADDRESS": self.temporal_address,  # overridden for the stock server
            "TEMPORAL_TASK_QUEUE": task_queue,
            "REDIS_ADDR": f"127.0.0.1:{self.redis_port}",
            "LLM_BASE_URL": llm_url,
            "LLM_API_KEY": API_KEY,
            "LLM_MODEL": "echo-default",
            "MCP_SERVERS": "",
            "WORK_STREAMS": stream,
            "LOG_LEVEL": "info",
            "HEALTH_PORT": str(free_port()),  # each service its own (0 would turn the endpoint off)
            "METRICS_PORT": "0",
            **overrides,
        }

    # -- our services --------------------------------------------------------------------------
    def start_worker(self, name: str, task_queue: str, stream: str, llm_url: str, *, patches: str = "", **env: str) -> Service:
        """The real worker (`python -m executor worker`), or with `patches` the same worker with
        scratch experiments applied in its process only (`python -m bench.worker`)."""
        module = "bench.worker" if patches else "executor"
        argv = [sys.executable, "-m", module, "worker"]
        proc = self.spawn(name, argv, self.env(task_queue, stream, llm_url, WORKER_ID=name, BENCH_PATCHES=patches, **env))
        return Service("worker", proc, task_queue, stream)

    def start_ingress(self, name: str, task_queue: str, stream: str, *, patches: str = "", **env: str) -> Service:
        """The real ingress, or with `patches` the same with scratch experiments (bench/worker.py)."""
        argv = [sys.executable, "-m", "bench.worker" if patches else "executor", "ingress"]
        proc = self.spawn(name, argv, self.env(task_queue, stream, self.llm_url, WORKER_ID=name, BENCH_PATCHES=patches, **env))
        return Service("ingress", proc, task_queue, stream)

    def stop(self, proc: Proc, *, kill: bool = False) -> None:
        if kill:
            proc.kill()
        else:
            proc.stop(timeout=10)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        """Stop everything, newest first (services before Redis and Temporal)."""
        for proc in reversed(list(self.procs)):
            try:
                proc.stop(timeout=10)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"bench: could not stop {proc.name}: {exc}", file=sys.stderr)
        self.procs.clear()

    # -- the slow LLM server's control endpoints ---------------------------------------------
    def slow_stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.llm_url}/stats", timeout=5) as reply:
            return json.loads(reply.read())

    def _slow_post(self, path: str) -> None:
        req = urllib.request.Request(f"{self.llm_url}{path}", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass

    def slow_release(self) -> None:
        """Answer every held call now."""
        self._slow_post("/release")

    def slow_reset(self) -> None:
        """Hold new calls again, and restart the high-water marks."""
        self._slow_post("/reset")

