"""Payload encryption (adapters/encryption.py) and the codec server (executor/codec_server.py).

Unit tests of the codec and the key configuration first; then a real stack of its own with
encryption on (keys A then B), read from outside as an operator of the Temporal service (or of
its Redis) would: raw history events and raw stored blobs must hold no plaintext of the task, the
tool output, the answer or a failure's message; the codec server decrypts that same history with
the token and refuses without it; a history written with key A replays once key B is current."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import stat
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History

from adapters import encryption
from adapters.settings import Settings
from core.errors import ContractError
from doubles.scripted_llm import ScriptedLLM, text, tool_use
from executor.local_services import free_port, wait_for_port
from tests.conftest import ARTIFACTS
from tests.support.stack import Stack, run_stack, wait_until

KEY_A, KEY_B = encryption.new_key(), encryption.new_key()


def ring(current: str = "a", **keys: str) -> encryption.KeyRing:
    return encryption.KeyRing({k: base64.b64decode(v) for k, v in keys.items()}, current)


def plain(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the codec ----------------------------------------------------------------------------------


def test_a_payload_round_trips_and_its_bytes_hold_no_plaintext() -> None:
    codec = encryption.EncryptionCodec(ring(a=KEY_A))
    original = plain({"task": "secret-task-text"})
    [sealed] = run(codec.encode([original]))
    assert sealed.metadata["encoding"] == b"binary/encrypted" and sealed.metadata["encryption-key-id"] == b"a"
    assert b"secret-task-text" not in sealed.SerializeToString() and b"json/plain" not in sealed.SerializeToString()
    [restored] = run(codec.decode([sealed]))
    assert restored == original  # metadata (json/plain) included
    [again] = run(codec.encode([original]))
    assert again.data == sealed.data  # synthetic nonce: the same value, the same bytes (content addressing)
    [other] = run(codec.encode([plain({"task": "secret-task-texT"})]))
    assert other.data[: encryption.NONCE_BYTES] != sealed.data[: encryption.NONCE_BYTES]  # another value, another nonce


def test_large_compressible_payloads_are_compressed_before_encryption_small_ones_not() -> None:
    codec = encryption.EncryptionCodec(ring(a=KEY_A))
    big, small = plain("line of text " * 5000), plain("short")
    [sealed_big, sealed_small] = run(codec.encode([big, small]))
    assert sealed_big.metadata["encryption-compression"] == b"zlib"
    assert len(sealed_big.data) < len(big.SerializeToString()) // 10
    assert "encryption-compression" not in sealed_small.metadata
    assert run(codec.decode([sealed_big, sealed_small])) == [big, small]


def test_plain_payloads_written_before_encryption_still_decode() -> None:
    codec = encryption.EncryptionCodec(ring(a=KEY_A))
    assert run(codec.decode([plain("from before")])) == [plain("from before")]


def test_rotation_new_payloads_use_the_current_key_old_ones_stay_readable() -> None:
    [old] = run(encryption.EncryptionCodec(ring("a", a=KEY_A)).encode([plain("written with a")]))
    rotated = encryption.EncryptionCodec(ring("b", a=KEY_A, b=KEY_B))
    [new] = run(rotated.encode([plain("written with b")]))
    assert new.metadata["encryption-key-id"] == b"b"
    assert run(rotated.decode([old, new])) == [plain("written with a"), plain("written with b")]
    with pytest.raises(encryption.DecryptionError, match="key 'a', which is not configured here"):
        run(encryption.EncryptionCodec(ring("b", b=KEY_B)).decode([old]))


def test_altered_ciphertext_or_metadata_fails_authentication() -> None:
    codec = encryption.EncryptionCodec(ring(a=KEY_A))
    [sealed] = run(codec.encode([plain("x" * 2000)]))
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    stripped = Payload()
    stripped.CopyFrom(sealed)
    del stripped.metadata["encryption-compression"]  # the flag is associated data
    same_id_other_key = encryption.EncryptionCodec(ring(a=KEY_B))
    for payload, codec_used in ((flipped, codec), (stripped, codec), (sealed, same_id_other_key)):
        with pytest.raises(encryption.DecryptionError, match="fails authentication"):
            run(codec_used.decode([payload]))


# -- keys -----------------------------------------------------------------------------------------


def test_keys_from_the_environment_and_a_key_file(tmp_path: Path) -> None:
    assert encryption.key_ring(Settings()) is None  # no keys: encryption off
    one = encryption.key_ring(Settings(encryption_keys=f"a={KEY_A}"))
    assert one is not None and one.current == "a" and one.keys["a"] == base64.b64decode(KEY_A)
    key_file = tmp_path / "keys"
    key_file.write_text(f"# comment\nb={KEY_B}\n\n")
    both = encryption.key_ring(Settings(encryption_keys=f"a={KEY_A}", encryption_key_file=str(key_file), encryption_key_id="b"))
    assert both is not None and both.current == "b" and both.key_ids == ["a", "b"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(encryption_keys="a=not base64!"), "ENCRYPTION_KEYS: key 'a' is not base64"),
        (dict(encryption_keys=f"a={base64.b64encode(b'short').decode()}"), "key 'a' is 5 bytes; AES-256 needs 32"),
        (dict(encryption_keys=f"a={KEY_A},b={KEY_B}"), "several encryption keys (a, b): set ENCRYPTION_KEY_ID"),
        (dict(encryption_keys=f"a={KEY_A}", encryption_key_id="c"), "ENCRYPTION_KEY_ID 'c' is not among the configured keys (a)"),
        (dict(encryption_keys=f"a={KEY_A},a={KEY_B}"), "key id 'a' is listed twice"),
        (dict(encryption_key_id="a"), "no keys are configured"),
        (dict(encryption_key_file="/nonexistent/keys"), "ENCRYPTION_KEY_FILE: cannot read /nonexistent/keys"),
    ],
)
def test_bad_key_configuration_is_one_readable_error(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ContractError) as err:
        encryption.key_ring(Settings(**settings))
    assert message in str(err.value)
    assert KEY_A not in str(err.value) and KEY_B not in str(err.value)  # never the key material


def test_a_generated_key_file_is_private_and_kept_across_restarts(tmp_path: Path) -> None:
    path = encryption.ensure_key_file(tmp_path / "data" / "encryption.keys", "dev")
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert encryption.ensure_key_file(path, "other").read_text() == first
    generated = encryption.key_ring(Settings(encryption_key_file=str(path)))
    assert generated is not None and generated.key_ids == ["dev"]


def test_keys_and_the_codec_token_are_redacted_from_logs() -> None:
    settings = Settings(encryption_keys=f"a={KEY_A},b={KEY_B}", encryption_key_id="a", codec_server_token="tok-" + "x" * 20)
    assert {KEY_A, KEY_B, "tok-" + "x" * 20} <= set(settings.secret_values(environ={}))
    loaded = encryption.key_ring(settings)
    assert loaded is not None and "a" in repr(loaded) and KEY_A not in repr(loaded) and str(loaded.keys["a"]) not in repr(loaded)


def test_the_codec_server_answers_a_payload_it_cannot_decrypt_with_400_naming_the_key() -> None:
    from starlette.testclient import TestClient

    from executor.codec_server import app_from_settings

    [foreign] = run(encryption.EncryptionCodec(ring("z", z=KEY_B)).encode([plain("other deployment")]))
    body = json_format.MessageToJson(Payloads(payloads=[foreign]))
    settings = Settings(encryption_keys=f"a={KEY_A}", codec_server_token="t0ken", payload_storage="off")
    with TestClient(app_from_settings(settings)) as client:
        reply = client.post("/t0ken/decode", content=body)
        assert reply.status_code == 400 and "key 'z', which is not configured here" in reply.json()["error"]
        assert client.post("/t0ken/decode", content="not json").status_code == 400
        assert client.post("/t0ken/other", content=body).status_code == 404
    with pytest.raises(ContractError, match="needs a token"):
        app_from_settings(Settings(encryption_keys=f"a={KEY_A}"))
    with pytest.raises(ContractError, match="nothing to decrypt with"):
        app_from_settings(Settings(codec_server_token="t0ken"))


# -- a real stack with encryption on ------------------------------------------------------------

TOKEN = "codec-token-" + uuid.uuid4().hex
UI_ORIGIN = "http://ui.example:8233"


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Stack]:
    """Key `a` current; payloads above 200 bytes (after compression and encryption) leave the history for Redis, so blobs are written too."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "encryption-stack.log", "w") as log, contextlib.closing(
        run_stack(tmp_path_factory.mktemp("encrypted"), log, llm, ENCRYPTION_KEYS=f"a={KEY_A}", PAYLOAD_STORAGE_THRESHOLD="200")
    ) as stacks:
        yield next(stacks)


@pytest.fixture(scope="module")
def codec_url(encrypted: Stack) -> str:
    port = free_port()
    proc = encrypted.start_service("codec-server", CODEC_SERVER_PORT=str(port), CODEC_SERVER_TOKEN=TOKEN, CODEC_CORS_ORIGINS=UI_ORIGIN)
    wait_for_port(port, proc=proc)
    return f"http://127.0.0.1:{port}"


class Node:
    """An agent node whose task, tool output and answer each carry a tag of their own."""

    def __init__(self, stack: Stack, llm: ScriptedLLM) -> None:
        tag = uuid.uuid4().hex[:10]
        self.task, self.tool_output, self.answer = f"task-{tag}", f"tool-out-{tag}", f"answer-{tag}"
        model = f"claude-enc-{tag}"
        llm.script(model, tool_use(("echo", {"text": self.tool_output})), text(self.answer))
        graph, node, self.workflow_id = stack.submit_agent({"llm_config": {"model": model}, "tools": ["echo"], "task": f"Echo {self.task}"})
        self.event = stack.wait_event(graph, node, timeout=60)

    @property
    def secrets(self) -> list[str]:
        return [self.task, self.tool_output, self.answer]


@pytest.fixture(scope="module")
def node(encrypted: Stack, llm: ScriptedLLM) -> Node:
    return Node(encrypted, llm)


def raw_history(stack: Stack, workflow_id: str) -> History:
    """The events as the server keeps them: nothing decoded."""
    history = stack.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    return History(events=history.events)


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload anywhere in a message tree, with where it sits."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if hasattr(value, "items"):  # a map
            items = [(f"{field.name}[{k}]", v) for k, v in value.items()]
        elif isinstance(value, Message):
            items = [(field.name, value)]
        else:  # repeated
            items = [(f"{field.name}[{i}]", v) for i, v in enumerate(value)]
        for name, item in items:
            if isinstance(item, Message):
                yield from payloads_in(item, f"{path}.{name}")


def sealed_or_stored(payload: Payload) -> bool:
    """Encrypted here, or a reference to a payload stored outside the history (whose blob the
    raw-blob check reads)."""
    return payload.metadata.get("encoding") == b"binary/encrypted" or bool(payload.external_payloads)


def sealed_here_or_in_store(stack: Stack, payload: Payload) -> bool:
    """Encrypted in place, or a reference to a stored blob that is itself encrypted."""
    if not payload.external_payloads:
        return payload.metadata.get("encoding") == b"binary/encrypted"
    import redis

    key = json.loads(payload.data)["claimData"]["key"]
    stored = Payload()
    stored.ParseFromString(redis.Redis(port=stack.redis_port).get(key))
    return stored.metadata.get("encoding") == b"binary/encrypted"


def stored_blobs(stack: Stack) -> dict[str, bytes]:
    import redis

    raw = redis.Redis(port=stack.redis_port)
    return {key.decode(): raw.get(key) for key in raw.keys("executor:payload:*")}


def post(url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


LOCAL_ACTIVITY_MARKER_FIELDS = {"activation_index", "seq", "attempt", "activity_id", "activity_type", "complete_time", "backoff", "original_schedule_time"}


def test_raw_history_and_stored_blobs_hold_no_plaintext(encrypted: Stack, node: Node) -> None:
    assert node.event["type"] == "node.completed" and node.event["data"]["output"]["result"] == node.answer
    # the result event on Redis stays plain: the orchestrator reads it
    history = raw_history(encrypted, node.workflow_id)
    raw = history.SerializeToString()
    leaked = [s for s in node.secrets if s.encode() in raw]
    assert not leaked, f"plaintext in the raw history: {leaked}"
    found = list(payloads_in(history))
    # A local step's marker holds the SDK's own bookkeeping in plain JSON (which activity, which
    # attempt, when); its result, like every payload of ours, is sealed.
    markers = [json.loads(p.data) for path, p in found if path.endswith("marker_recorded_event_attributes.details[data].payloads[0]")]
    assert markers and all(set(m) <= LOCAL_ACTIVITY_MARKER_FIELDS for m in markers), [sorted(m) for m in markers]
    plain_ones = [
        (path, p.metadata.get("encoding"))
        for path, p in found
        if not sealed_or_stored(p) and "search_attributes" not in path and "details[data]" not in path
    ]
    assert len(found) > 20 and not plain_ones, plain_ones
    assert {p.metadata["encryption-key-id"] for _, p in found if p.metadata.get("encoding") == b"binary/encrypted"} == {b"a"}
    summaries = [p for path, p in found if "user_metadata.summary" in path]
    assert summaries and all(p.metadata["encoding"] == b"binary/encrypted" for p in summaries)  # steps' summaries too
    blobs = stored_blobs(encrypted)
    assert blobs, "nothing left the history: the threshold of this stack should make the LLM requests go to Redis"
    assert not [k for k, blob in blobs.items() if any(s.encode() in blob for s in node.secrets)]
    for blob in blobs.values():
        stored = Payload()
        stored.ParseFromString(blob)
        assert stored.metadata["encoding"] == b"binary/encrypted"


def test_a_failure_message_is_encrypted_in_the_history(encrypted: Stack) -> None:
    """An activity failure's message can quote the input (here a tool's argument check): it is
    moved into the failure's encoded attributes; the node.failed event still says it in full."""
    tag = f"bad-city-{uuid.uuid4().hex[:8]}"
    graph, node = encrypted.submit_node({"tool_name": "get_weather", "tool_params": {"city": [tag]}})
    event = encrypted.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.failed" and tag in event["data"]["error"], event
    history = raw_history(encrypted, event["data"]["workflow_id"])
    failures = [e.activity_task_failed_event_attributes.failure for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert failures and all(f.message == "Encoded failure" and sealed_here_or_in_store(encrypted, f.encoded_attributes) for f in failures)
    assert tag.encode() not in history.SerializeToString()


def test_a_query_answer_is_encrypted_on_the_wire(encrypted: Stack, node: Node) -> None:
    """Queries never reach the history, but their answers cross Temporal's server: sealed too."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.query.v1 import WorkflowQuery
    from temporalio.api.workflowservice.v1 import QueryWorkflowRequest

    async def raw_query(client: Any) -> Any:
        request = QueryWorkflowRequest(namespace="default", execution=WorkflowExecution(workflow_id=node.workflow_id), query=WorkflowQuery(query_type="transcript"))
        return await client.workflow_service.query_workflow(request)

    reply = encrypted.temporal(raw_query)
    assert reply.query_result.payloads and all(sealed_here_or_in_store(encrypted, p) for p in reply.query_result.payloads)
    assert not [s for s in node.secrets if s.encode() in reply.SerializeToString()]
    transcript = json.dumps(encrypted.query(node.workflow_id, "transcript"))  # decoded by a client with the key
    assert node.task in transcript and node.tool_output in transcript


def test_the_codec_server_decrypts_the_history_with_the_token_and_refuses_without(encrypted: Stack, node: Node, codec_url: str) -> None:
    history = raw_history(encrypted, node.workflow_id)
    sealed = [p for path, p in payloads_in(history) if sealed_or_stored(p) and "search_attributes" not in path]  # what the UI sends
    assert any(p.external_payloads for p in sealed)  # references to stored payloads among them
    body = json_format.MessageToJson(Payloads(payloads=sealed)).encode()
    json_headers = {"Content-Type": "application/json", "X-Namespace": "default"}

    for refused in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
        status, _, reply = post(f"{codec_url}/decode", body, {**json_headers, **refused})
        assert status == 401 and not any(s.encode() in reply for s in node.secrets), (refused, status, reply[:200])
    status, _, _ = post(f"{codec_url}/wrong-token/decode", body, json_headers)
    assert status == 401

    for url, auth in ((f"{codec_url}/decode", {"Authorization": f"Bearer {TOKEN}"}), (f"{codec_url}/{TOKEN}/decode", {})):
        status, _, reply = post(url, body, {**json_headers, **auth})
        assert status == 200, reply[:300]
        decoded = json_format.Parse(reply, Payloads()).payloads
        assert len(decoded) == len(sealed) and not any(sealed_or_stored(p) for p in decoded)
        text_of_all = b"\n".join(p.data for p in decoded)
        assert node.tool_output.encode() in text_of_all and node.answer.encode() in text_of_all

    # the browser's preflight: allowed for the UI's origin only
    preflight = {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-namespace"}
    status, headers, _ = post(f"{codec_url}/{TOKEN}/decode", b"", preflight, method="OPTIONS")
    assert status == 200 and headers.get("access-control-allow-origin") == UI_ORIGIN
    status, headers, _ = post(f"{codec_url}/{TOKEN}/decode", b"", {**preflight, "Origin": "http://elsewhere.example"}, method="OPTIONS")
    assert status == 400 and "access-control-allow-origin" not in headers


def test_the_worker_warns_at_start_when_encryption_is_off(encrypted: Stack, tmp_path: Path) -> None:
    """A worker without keys (on a queue of its own) says so at start; the keyed one does not."""
    import sys

    from executor.local_services import Proc
    from tests.support.stack import ROOT

    warning = "payload encryption is off: prompts, tool results and answers are stored in plaintext"
    log_path = tmp_path / "plain-worker.log"
    env = encrypted.env(ENCRYPTION_KEYS="", TEMPORAL_TASK_QUEUE=f"plain-{uuid.uuid4().hex[:6]}", WORKER_ID="plain", HEALTH_PORT="0", METRICS_PORT="0")
    with open(log_path, "w") as sink:
        proc = Proc("plain-worker", [sys.executable, "-m", "executor", "worker"], env=env, sink=sink, cwd=str(ROOT))
        try:
            wait_until(lambda: "worker plain polling" in log_path.read_text(), timeout=60, message="the plain worker polling")
        finally:
            proc.stop()
    assert warning in log_path.read_text()
    keyed_log = Path(encrypted.log.name).read_text()
    assert "worker worker polling" in keyed_log and warning not in keyed_log


def test_a_history_written_with_key_a_replays_after_key_b_becomes_current(encrypted: Stack, node: Node, llm: ScriptedLLM) -> None:
    from temporalio.worker import Replayer

    from adapters.temporal_client import data_converter
    from workflows.node import NodeWorkflow

    rotated = {"ENCRYPTION_KEYS": f"a={KEY_A},b={KEY_B}", "ENCRYPTION_KEY_ID": "b"}
    old = encrypted.temporal(lambda c: c.get_workflow_handle(node.workflow_id).fetch_history())

    async def replay(env: dict[str, str]) -> Any:
        converter = data_converter(Settings.from_env(encrypted.env(**env)))
        return await Replayer(workflows=[NodeWorkflow], data_converter=converter).replay_workflow(old, raise_on_replay_failure=False)

    assert run(replay(rotated)).replay_failure is None
    # key a dropped too early: the history cannot be read
    failure = run(replay({"ENCRYPTION_KEYS": f"b={KEY_B}"})).replay_failure
    assert failure is not None and 'type: "DecryptionError"' in str(failure), repr(failure)  # its message is encrypted too

    # the services rotate: new nodes are written with b, and the node written with a stays readable
    encrypted.extra_env.update(rotated)
    for name in ("worker", "ingress"):
        encrypted.restart(name)
    fresh = Node(encrypted, llm)
    assert fresh.event["type"] == "node.completed" and fresh.event["data"]["output"]["result"] == fresh.answer
    ids = {p.metadata.get("encryption-key-id") for _, p in payloads_in(raw_history(encrypted, fresh.workflow_id))}
    assert b"b" in ids and b"a" not in ids
    assert run(replay(rotated)).replay_failure is None


# -- the dev stack ------------------------------------------------------------------------------


def test_dev_encrypts_by_default_and_its_ui_knows_the_codec_endpoint(tmp_path: Path) -> None:
    """`make run`: a key generated into the data folder, and the UI pointed at a codec server
    that decrypts with it for the token in the endpoint's path, and refuses without it."""
    import os
    import signal

    from tests.test_dev import start_dev

    dev = start_dev(tmp_path, "encryption")
    try:
        key_file = tmp_path / "data" / "encryption.keys"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert "[dev] payloads are encrypted" in dev.log.read_text()
        ui_port = dev.argv[dev.argv.index("--ui-port") + 1]
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10) as reply:
            endpoint = json.loads(reply.read())["Codec"]["Endpoint"]
        base, _, token = endpoint.rpartition("/")
        assert base.startswith("http://127.0.0.1:") and len(token) >= 32
        dev_ring = encryption.key_ring(Settings(encryption_key_file=str(key_file)))
        assert dev_ring is not None
        [sealed] = run(encryption.EncryptionCodec(dev_ring).encode([plain("dev-secret")]))
        body = json_format.MessageToJson(Payloads(payloads=[sealed])).encode()
        wait_for_port(int(base.rpartition(":")[2]), timeout=60)  # the codec server starts beside the workers
        origin = {"Origin": f"http://127.0.0.1:{ui_port}", "Content-Type": "application/json"}
        status, headers, reply = post(f"{endpoint}/decode", body, origin)
        assert status == 200 and headers.get("access-control-allow-origin") == origin["Origin"]
        assert json_format.Parse(reply, Payloads()).payloads[0] == plain("dev-secret")
        assert post(f"{base}/decode", body, origin)[0] == 401
    finally:
        for pid in dev.children() | {dev.popen.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        dev.popen.wait(10)
