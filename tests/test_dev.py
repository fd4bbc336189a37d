"""`dev` (what `make run` starts) dies with its children, however it dies, and a second one on the
same ports says what is in the way instead of failing with a bind error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from executor.local_services import free_port
from tests.conftest import ARTIFACTS, ROOT
from tests.support.stack import wait_until

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc), children in their own sessions included."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@dataclass
class Dev:
    popen: subprocess.Popen[str]
    argv: list[str]
    env: dict[str, str]
    log: Path

    def children(self) -> set[int]:
        return descendants(self.popen.pid)


def start_dev(tmp: Path, name: str) -> Dev:
    ports = [free_port() for _ in range(7)]
    argv = [
        sys.executable, "-m", "executor", "dev", "--data-dir", str(tmp / "data"),
        "--temporal-port", str(ports[0]), "--ui-port", str(ports[1]), "--redis-port", str(ports[2]),
        "--health-port", str(ports[3]), "--metrics-port", str(ports[4]),
        "--ingress-health-port", str(ports[5]), "--ingress-metrics-port", str(ports[6]),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("LLM_API_KEY", "ANTHROPIC_API_KEY")}
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"dev-{name}.log"
    out = open(log, "w")
    popen = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    dev = Dev(popen, argv, env, log)
    wait_until(lambda: "Ctrl-C stops everything" in log.read_text() or popen.poll() is not None, timeout=90, message="dev started")
    assert popen.poll() is None, log.read_text()[-2000:]
    # temporal, redis, worker, ingress (and the worker's own children, if any)
    wait_until(lambda: len(dev.children()) >= 4, timeout=30, message="dev's children running")
    return dev


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    d = start_dev(tmp_path, "supervisor")
    yield d
    for pid in d.children() | {d.popen.pid}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    d.popen.wait(10)


def test_a_second_dev_on_the_same_ports_says_so_in_one_line(dev: Dev) -> None:
    second = subprocess.run(dev.argv, env=dev.env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("[dev] already running, or ports taken:")
    temporal_port = dev.argv[dev.argv.index("--temporal-port") + 1]
    assert f"{temporal_port} (temporal: pid " in lines[0]
    assert "Traceback" not in second.stderr + second.stdout
    assert dev.popen.poll() is None  # the first one is untouched


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_children_die_with_dev_however_it_dies(dev: Dev, sig: signal.Signals) -> None:
    children = dev.children()
    dev.popen.send_signal(sig)
    dev.popen.wait(60)
    wait_until(lambda: not any(alive(pid) for pid in children), timeout=60, message=f"every child of dev gone after {sig.name}")
    # and the ports are free again: the next `make run` starts
    from executor.local_services import listeners

    ports = [int(dev.argv[i + 1]) for i, a in enumerate(dev.argv) if a.endswith("-port")]
    wait_until(lambda: not listeners(ports), timeout=30, message="ports released")
