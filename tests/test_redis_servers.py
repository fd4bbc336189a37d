"""The Redis side of the pipeline on both servers we ship: the embedded one (Valkey 9.1) and the
oldest we support (Redis 6.2). Each runs the emit and ingress paths that use server features:
the state write-back that keeps the orchestrator's TTL, the emitted-marker transaction, XAUTOCLAIM
and the dead-letter transaction. Test ids name the server's version; below the floor, the
services refuse to start with one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from executor.local_services import REDIS_SERVERS, free_port, redis_version
from doubles.scripted_llm import ScriptedLLM
from tests.conftest import ARTIFACTS, ROOT
from tests.support.stack import DEAD, ORCHESTRATOR_WORK, WORK, Stack, run_stack, wait_until

VERSIONS = {kind: redis_version(kind) for kind in REDIS_SERVERS}


@pytest.fixture(scope="module", params=REDIS_SERVERS, ids=[VERSIONS[k].replace(" ", "-") for k in REDIS_SERVERS])
def rs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    kind = request.param
    with open(ARTIFACTS / f"redis-{kind}-stack.log", "w") as log:
        yield from run_stack(
            tmp_path_factory.mktemp(f"redis-{kind}"), log, llm, redis_server=kind,
            RECLAIM_IDLE_MS="1000", RECLAIM_INTERVAL_MS="200",
        )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def orchestrator_node(s: Stack, graph: str, ttl: int | None) -> None:
    """Graph state first (as the orchestrator does), then the orchestrator's own envelope."""
    state = {
        "graph_id": graph, "status": "running", "inputs": {"a": 6}, "node_states": {},
        "graph": {"id": graph, "entry_node": "calc", "edges": [], "nodes": {
            "calc": {"id": "calc", "type": "executor", "executor_type": "tool",
                     "config": {"tool_name": "calculate", "tool_params": {"expression": "{{a}} * 7"}}},
        }},
    }
    s.redis.set(f"dago:state:{graph}", json.dumps(state), ex=ttl)
    s.submit(
        {"id": str(uuid.uuid4()), "type": "node.work", "timestamp": "2026-11-27T10:00:00Z", "execution_id": graph,
         "data": {"node_id": "calc", "node_type": "executor", "graph_id": graph, "state": {}, "node_state": {}}},
        stream=ORCHESTRATOR_WORK,
    )


def test_services_name_the_server_they_run_on(rs: Stack) -> None:
    name, version = VERSIONS[rs.redis_server].split()
    expected = f"{'Valkey' if name == 'valkey' else 'Redis'} {version}"
    log = ARTIFACTS / f"redis-{rs.redis_server}-stack.log"
    wait_until(lambda: log.read_text().count(expected) >= 2, message=f"worker and ingress log {expected}")


def test_result_written_back_into_graph_state_keeps_its_ttl(rs: Stack) -> None:
    graph = unique("g")
    orchestrator_node(rs, graph, ttl=3600)
    event = rs.wait_event(graph, "calc")
    assert event["type"] == "node.completed" and event["data"]["output"] == 42
    written = json.loads(rs.redis.get(f"dago:state:{graph}"))
    assert written["node_states"]["calc"]["output"] == 42
    assert written["graph"]["edges"] == []
    assert 3000 < rs.redis.ttl(f"dago:state:{graph}") <= 3600


def test_state_without_ttl_gets_the_usual_day(rs: Stack) -> None:
    graph = unique("g")
    orchestrator_node(rs, graph, ttl=None)
    rs.wait_event(graph, "calc")
    assert json.loads(rs.redis.get(f"dago:state:{graph}"))["node_states"]["calc"]["status"] == "completed"
    assert 86_000 < rs.redis.ttl(f"dago:state:{graph}") <= 86_400


def test_duplicate_delivery_reports_once(rs: Stack) -> None:
    graph = unique("g")
    doc = {"id": str(uuid.uuid4()), "graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "1+1"}}}
    rs.submit(doc)
    rs.submit(doc)
    rs.wait_event(graph)
    wait_until(lambda: rs.pending() == 0, message="both entries acknowledged")
    assert len(rs.events(graph)) == 1


def test_entries_left_by_a_dead_consumer_are_reclaimed(rs: Stack) -> None:
    graph = unique("g")
    rs.submit_node({"tool_name": "calculate", "tool_params": {"expression": "2+2"}}, graph_id=graph)
    # Race the ingress for the entry as a consumer that then dies; whoever got it, it runs once.
    rs.redis.xreadgroup("executor-workers", "ghost", {WORK: ">"}, count=10)
    event = rs.wait_event(graph, timeout=60)
    assert event["data"]["output"] == 4
    wait_until(lambda: rs.pending() == 0, timeout=30, message="the ghost's entries reclaimed and acked")
    assert len(rs.events(graph)) == 1


def test_malformed_entry_is_dead_lettered_and_reported(rs: Stack) -> None:
    graph = unique("g")
    rs.submit({"graph_id": graph, "node_id": "n1"})  # no config
    event = rs.wait_event(graph)
    assert event["type"] == "node.failed" and "config" in event["data"]["error"]
    wait_until(lambda: any(d.get("reason") and graph in d.get("data", "") for d in rs.dead_letters()), message="dead letter")
    wait_until(lambda: rs.pending() == 0, message="acknowledged")
    assert rs.redis.xlen(DEAD) >= 1


class OldRedis:
    """A RESP speaker that reports Redis 6.0.9 in INFO: we have no older real server in a wheel,
    and all this checks is what the services do with the version they are told."""

    def __init__(self) -> None:
        self.port = free_port()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self._sock.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        info = b"# Server\r\nredis_version:6.0.9\r\nredis_mode:standalone\r\n"
        with conn:
            while data := conn.recv(65536):
                if b"INFO" in data.upper():
                    conn.sendall(b"$%d\r\n%s\r\n" % (len(info), info))
                elif b"PING" in data.upper():
                    conn.sendall(b"+PONG\r\n")
                else:
                    conn.sendall(b"+OK\r\n" * max(1, data.count(b"*")))


@pytest.mark.parametrize("service", ["worker", "ingress"])
def test_a_server_below_the_floor_is_refused_in_one_line(stack: Stack, service: str) -> None:
    old = OldRedis()
    env = stack.env(REDIS_ADDR=f"127.0.0.1:{old.port}", HEALTH_PORT="0", METRICS_PORT="0", LOG_LEVEL="warn")
    done = subprocess.run([sys.executable, "-m", "executor", service], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"error: Redis at 127.0.0.1:{old.port} is Redis 6.0.9; this executor needs Redis 6.2 or newer (or Valkey)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("addr", "host", "port", "db", "tls"),
    [
        ("cache", "cache", 6379, 0, False),
        ("cache:6380", "cache", 6380, 0, False),
        ("[::1]:6381", "::1", 6381, 0, False),
        ("redis://user:pw@cache:6382/3", "cache", 6382, 3, False),
        ("rediss://cache:6383", "cache", 6383, 0, True),
    ],
)
def test_redis_addr_takes_host_host_port_and_urls(addr: str, host: str, port: int, db: int, tls: bool) -> None:
    from adapters.settings import Settings
    from adapters.redis_client import connect

    pool = connect(Settings(redis_addr=addr)).connection_pool
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs.get("db", 0)) == (host, port, db)
    assert (pool.connection_class.__name__ == "SSLConnection") is tls


@pytest.mark.parametrize("addr", ["cache:port", "http://cache:6379"])
def test_a_redis_addr_that_is_no_address_is_one_clear_line(addr: str) -> None:
    done = subprocess.run([sys.executable, "-m", "executor", "status"], env={"REDIS_ADDR": addr, "PATH": ""}, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: configuration: redis_addr:") and "Traceback" not in done.stderr


def test_a_url_reaches_the_same_server(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "executor", "status", "--json"],
        env=stack.env(REDIS_ADDR=f"redis://127.0.0.1:{stack.redis_port}/0"), cwd=str(ROOT), capture_output=True, text=True, timeout=60,
    )
    assert json.loads(done.stdout)["redis"] == "ok", done.stdout + done.stderr
