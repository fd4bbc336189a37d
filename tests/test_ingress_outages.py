"""Ingress under outages, on real processes: delivery counts that Redis blips or restarts inflate
must not dead-letter a valid entry. Their own stack (Temporal persists to SQLite, so it can be
stopped and started), with a low MAX_DELIVERIES so that an inflated count shows."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from executor.local_services import start_redis, start_temporal
from doubles.scripted_llm import ScriptedLLM
from tests.conftest import ARTIFACTS
from tests.support.stack import WORK, Stack, run_stack, wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "ingress-outage-stack.log", "w") as log:
        yield from run_stack(tmp_path_factory.mktemp("outages"), log, llm, temporal_db=True, MAX_DELIVERIES="3", INGRESS_RETRY_MAX_SECONDS="1")


def calc(expression: str = "1+2") -> dict:
    return {"tool_name": "calculate", "tool_params": {"expression": expression}}


def ingress_log(s: Stack, name: str = "ingress") -> list[str]:
    with open(s.log.name, errors="replace") as log:
        return [line for line in log if line.startswith(f"[{name}] ")]


def loop_met_redis_error(s: Stack) -> int:
    """How often the ingress's loop met a Redis error (it logs each before backing off)."""
    return len([line for line in ingress_log(s) if "ingress: " in line and "retrying in" in line])


def payloads(s: Stack) -> list[str]:
    """The stored payloads (docs/payload-storage.md): each start attempt stores its work item's
    (`EXPIRE`, then `SET … NX EX` when it is not there)."""
    return list(s.redis.scan_iter("executor:payload:*"))


def delivery_counts(s: Stack) -> list[int]:
    return [row["times_delivered"] for row in s.redis.xpending_range(WORK, "executor-workers", "-", "+", 100)]


def start_ingress(s: Stack, proxy: TcpProxy) -> None:
    """The ingress, talking to Redis through the proxy (the worker talks to Redis directly)."""
    s.start_service("ingress", REDIS_ADDR=f"127.0.0.1:{proxy.port}")


def outage(s: Stack, begin: Callable[[], None], end: Callable[[], None], what: str) -> None:
    """An outage the ingress's loop runs into, then the loop back at work: it recovered its pending
    entries from Redis and tries to start them again (it writes their payloads again first)."""
    errors = loop_met_redis_error(s)
    begin()
    wait_until(lambda: loop_met_redis_error(s) > errors, timeout=120, interval=0.5, message=f"{what} met by the ingress")
    end()
    if written := payloads(s):
        s.redis.delete(*written)  # nothing refers to them yet: no start went through
    try:
        wait_until(lambda: payloads(s), timeout=120, interval=0.5, message=f"ingress back at work after {what}")
    except AssertionError as stuck:  # say why: entries pushed past MAX_DELIVERIES wait for Temporal to be dead-lettered
        raise AssertionError(f"{stuck}; delivery counts of the pending entries: {delivery_counts(s)} (MAX_DELIVERIES 3)") from None


@pytest.mark.timeout(900)
def test_redis_outages_and_ingress_restarts_while_temporal_is_down_dead_letter_nothing(outage_stack: Stack) -> None:
    """Temporal down; 5 Redis outages the ingress runs into (2 restarts of redis-server, then 3
    network blips, Redis up all along); 2 ingress restarts; Temporal back: every entry runs
    once, nothing is dead-lettered (MAX_DELIVERIES is 3). The work items are big enough for
    payload storage, so each start attempt writes to Redis and so meets each outage.

    (A restarted Redis reloads delivery counts from its AOF, which does not keep the bumps of
    re-reading pending entries: only the blips, Redis up, show inflated counts.)"""
    s = outage_stack
    proxy = TcpProxy(s.redis_port)
    s.procs.pop("ingress").stop()
    start_ingress(s, proxy)
    for service in ("worker", "ingress"):
        wait_until(lambda: s.http_get(service, "/ready")[0] == 200, timeout=60, message=f"{service} ready")
    s.procs.pop("temporal").kill()
    graphs = [f"g-{uuid.uuid4().hex[:10]}" for _ in range(5)]
    with s.redis.pipeline(transaction=True) as pipe:  # one transaction: read in one batch
        for g in graphs:
            config = {**calc(), "description": "x" * 150_000}
            pipe.xadd(WORK, {"data": json.dumps({"graph_id": g, "node_id": "n1", "config": config})})
        pipe.execute()
    wait_until(lambda: s.pending() == 5, timeout=60, message="all 5 read by the ingress")
    assert delivery_counts(s) == [1] * 5

    def stop_redis() -> None:
        s.procs.pop("redis").stop()  # SIGTERM: the AOF is flushed

    def start_redis_again() -> None:
        s.procs["redis"] = start_redis(s.tmp / "redis", port=s.redis_port, sink=s.log, server=s.redis_server)

    for n in range(2):
        outage(s, stop_redis, start_redis_again, f"Redis restart {n}")
    for n in range(3):
        outage(s, proxy.cut, proxy.restore, f"network blip {n}")
    assert delivery_counts(s) == [1] * 5  # outages are not deliveries
    for _ in range(2):
        s.procs.pop("ingress").kill()
        start_ingress(s, proxy)
    s.procs["temporal"] = start_temporal(s.tmp / "temporal", port=s.temporal_port, sink=s.log, headless=True)
    for g in graphs:
        s.wait_event(g, "n1", timeout=180)
    time.sleep(1.0)
    types = {g: [e["type"] for e in s.events(g, "n1")] for g in graphs}
    assert types == {g: ["node.completed"] for g in graphs}, [d["reason"] for d in s.dead_letters()]
    assert s.dead_letters() == []
    wait_until(lambda: s.pending() == 0, message="0 pending")
