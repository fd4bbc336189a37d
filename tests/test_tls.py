"""TLS for real: the worker and the ingress, as real processes, reach Redis over TLS with a client
certificate (`REDIS_TLS_*`) and Temporal over mTLS through the SDK's environment configuration
(`TEMPORAL_TLS_*`), and a node runs end to end; a client without a certificate our CA signed is
refused by both. The servers are the shared stack's, behind TLS fronts (tests/support/tls.py says
why: no server the project ships serves TLS itself)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from adapters.settings import Settings
from core.errors import ContractError
from tests.support.stack import ROOT, Stack, wait_until
from tests.support.tls import CLIENT_NAME, Certs, TlsFront, make_certs, server_context


@dataclass
class TlsSetup:
    certs: Certs
    redis: TlsFront
    temporal: TlsFront
    task_queue: str
    stream: str

    def env(self, *, cert: str | None, key: str | None, **extra: str) -> dict[str, str]:
        """Both services over TLS; `cert`/`key` the client certificate to present (None: none)."""
        env = {
            "REDIS_ADDR": f"rediss://localhost:{self.redis.port}",
            "REDIS_TLS_CA_FILE": str(self.certs.ca),
            "TEMPORAL_ADDRESS": f"localhost:{self.temporal.port}",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(self.certs.ca),
            **extra,
        }
        if cert and key:
            env.update(REDIS_TLS_CERT_FILE=cert, REDIS_TLS_KEY_FILE=key, TEMPORAL_TLS_CLIENT_CERT_PATH=cert, TEMPORAL_TLS_CLIENT_KEY_PATH=key)
        return env


@pytest.fixture(scope="module")
def tls(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSetup]:
    """A worker and an ingress of their own (own task queue and work stream, so the shared
    stack's plaintext services never touch this work) that know only the TLS addresses."""
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    setup = TlsSetup(
        certs=certs,
        redis=TlsFront(stack.redis_port, server_context(certs)).start(),
        temporal=TlsFront(stack.temporal_port, server_context(certs, alpn=["h2"])).start(),
        task_queue=f"tls-{uuid.uuid4().hex[:6]}",
        stream=f"tls.work.{uuid.uuid4().hex[:6]}",
    )
    env = setup.env(
        cert=str(certs.client_cert), key=str(certs.client_key),
        TEMPORAL_TASK_QUEUE=setup.task_queue, WORK_STREAMS=setup.stream, WATCHDOG_INTERVAL="0",
    )
    names = ("worker-tls", "ingress-tls")
    try:
        stack.start_service("worker", names[0], **env)
        stack.start_service("ingress", names[1], **env)
        yield setup
    finally:
        for name in names:
            proc = stack.procs.pop(name, None)
            if proc is not None:
                proc.stop()
        setup.redis.stop()
        setup.temporal.stop()


def cli(stack: Stack, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "executor", *args], env={**stack.env(), **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_node_runs_with_redis_over_tls_and_temporal_over_mtls(stack: Stack, tls: TlsSetup) -> None:
    graph = f"g-tls-{uuid.uuid4().hex[:8]}"
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "6*7"}}}, stream=tls.stream)
    event = stack.wait_event(graph, "n1", timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"] == 42, event

    async def task_queue(client) -> str:
        return (await client.get_workflow_handle(event["data"]["workflow_id"]).describe()).task_queue

    assert stack.temporal(task_queue) == tls.task_queue  # run by the TLS worker, started by the TLS ingress
    # Both services connected through the fronts with the client certificate our CA signed.
    assert CLIENT_NAME in tls.redis.clients and CLIENT_NAME in tls.temporal.clients
    assert set(tls.redis.clients) == {CLIENT_NAME} and set(tls.temporal.clients) == {CLIENT_NAME}
    # The CLI too, with the same settings (the refusals below differ from this only in the certificate).
    ok = cli(stack, "status", "--json", env=tls.env(cert=str(tls.certs.client_cert), key=str(tls.certs.client_key)))
    report = json.loads(ok.stdout)
    assert ok.returncode == 0 and report["redis"] == "ok" and report["temporal"] == "ok", ok.stdout + ok.stderr


@pytest.mark.parametrize("who", ["no certificate", "a certificate of another CA"])
def test_a_client_without_a_certificate_our_ca_signed_is_refused(stack: Stack, tls: TlsSetup, who: str) -> None:
    cert, key = (None, None) if who == "no certificate" else (str(tls.certs.stranger_cert), str(tls.certs.stranger_key))
    redis_refused, temporal_refused = len(tls.redis.refused), len(tls.temporal.refused)
    done = cli(stack, "status", "--json", env=tls.env(cert=cert, key=key))
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["redis"].startswith("unreachable") and report["temporal"].startswith("unreachable"), report
    # Refused in the handshake, for the reason expected, by both fronts.
    reason = "PEER_DID_NOT_RETURN_A_CERTIFICATE" if cert is None else "CERTIFICATE_VERIFY_FAILED"
    wait_until(lambda: len(tls.redis.refused) > redis_refused and len(tls.temporal.refused) > temporal_refused, message="refusals recorded")
    assert reason in tls.redis.refused[redis_refused:] and reason in tls.temporal.refused[temporal_refused:], (tls.redis.refused, tls.temporal.refused)


def test_redis_client_certificate_settings_need_tls() -> None:
    with pytest.raises(ContractError) as plain:
        Settings.from_env({"REDIS_ADDR": "localhost:6379", "REDIS_TLS_CERT_FILE": "/etc/client.pem"})
    assert "REDIS_TLS_CERT_FILE / REDIS_TLS_KEY_FILE need TLS" in str(plain.value)
    with pytest.raises(ContractError) as keyless:
        Settings.from_env({"REDIS_ADDR": "rediss://localhost:6379", "REDIS_TLS_KEY_FILE": "/etc/client.key"})
    assert "REDIS_TLS_KEY_FILE needs REDIS_TLS_CERT_FILE" in str(keyless.value)
    settings = Settings.from_env({"REDIS_TLS": "true", "REDIS_TLS_CERT_FILE": "/etc/client.pem", "REDIS_TLS_KEY_FILE": "/etc/client.key"})
    assert (settings.redis_tls_cert_file, settings.redis_tls_key_file) == ("/etc/client.pem", "/etc/client.key")
