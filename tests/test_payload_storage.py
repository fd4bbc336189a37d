"""Payload storage (adapters/payload_storage.py): the SDK's `ExternalStorage` with our Redis
driver and the SDK's S3 driver, through the data converter every process uses. Against a real
Redis (the embedded binary, started here) and a real S3-compatible server (moto in server mode).
The end-to-end runs are in test_agent.py (a 300 KiB tool result) and test_watchdog.py (a blob
deleted while its node waits)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import redis
from temporalio.api.common.v1 import Payload

from adapters.settings import Settings
from adapters.temporal_client import data_converter
from executor.local_services import Proc, free_port, start_redis, wait_for_port

BIG = 200 * 1024
REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"
EIGHT_DAYS = 8 * 86_400  # an agent's own timeout may be 7 days, plus a day of margin


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc = start_redis(tmp_path_factory.mktemp("payload-redis"), port=port, sink=sys.stderr)
    yield port
    proc.stop()


@pytest.fixture
def r(redis_port: int) -> redis.Redis:
    client = redis.Redis(port=redis_port)
    client.flushall()
    client.config_resetstat()
    return client


def settings(redis_port: int, **env: str) -> Settings:
    return Settings.from_env({"REDIS_ADDR": f"127.0.0.1:{redis_port}", **env})


def big_value(tag: str) -> dict:
    return {"tag": tag, "text": "y" * BIG}


def reference(payload: Payload) -> dict:
    """The claim a stored payload's reference carries (what the history holds)."""
    assert payload.metadata["encoding"] == b"json/protobuf" and payload.metadata["messageType"] == REFERENCE_TYPE
    return json.loads(payload.data)


def calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


# -- settings ------------------------------------------------------------------------------------


def test_settings_keep_the_released_claim_check_names() -> None:
    assert Settings.from_env({}).payload_storage == "redis" and Settings.from_env({}).payload_storage_threshold == 128 * 1024
    assert Settings.from_env({"CLAIM_CHECK_BYTES": "5000"}).payload_storage_threshold == 5000
    assert Settings.from_env({"CLAIM_CHECK_BYTES": "0"}).payload_storage == "off"
    both = Settings.from_env({"CLAIM_CHECK_BYTES": "5000", "PAYLOAD_STORAGE_THRESHOLD": "7000"})
    assert both.payload_storage_threshold == 7000
    assert Settings.from_env({"CLAIM_CHECK_TTL_SECONDS": "3600000"}).payload_storage_ttl_seconds == 3_600_000
    with pytest.raises(Exception, match="PAYLOAD_STORAGE=s3 needs PAYLOAD_STORAGE_S3_BUCKET"):
        Settings.from_env({"PAYLOAD_STORAGE": "s3"})


# -- Redis ----------------------------------------------------------------------------------------


async def test_a_payload_encoded_twice_is_stored_once(redis_port: int, r: redis.Redis) -> None:
    converter = data_converter(settings(redis_port))
    [first] = await converter.encode([big_value("once")])
    [again] = await converter.encode([big_value("once")])  # a replay, or the next call_llm's transcript
    claim = reference(first)["claimData"]
    assert reference(again) == reference(first) and reference(first)["driverName"] == "dago.redis"
    assert len(first.SerializeToString()) < 1024  # the history holds the reference, not the bytes
    key = claim["key"]
    assert r.keys("executor:payload:*") == [key.encode()]
    assert hashlib.sha256(r.get(key)).hexdigest() == claim["sha256"] == key.rpartition(":")[2]
    assert calls(r, "set") == 1 and calls(r, "expire") == 2  # the second encode renewed, uploaded nothing
    assert await converter.decode([again], [dict]) == [big_value("once")]
    [small] = await converter.encode([{"tag": "small"}])
    assert small.metadata["encoding"] == b"json/plain"  # below the threshold: inline


async def test_ttl_is_derived_from_node_timeout_and_renewed(redis_port: int, r: redis.Redis) -> None:
    converter = data_converter(settings(redis_port))  # NODE_TIMEOUT 1 h: an agent's own 7 days rule
    [stored] = await converter.encode([big_value("ttl")])
    key = reference(stored)["claimData"]["key"]
    assert EIGHT_DAYS - 60 < r.ttl(key) <= EIGHT_DAYS
    r.expire(key, 100)
    await converter.decode([stored], [dict])
    assert r.ttl(key) > EIGHT_DAYS - 60  # renewed on read
    r.expire(key, 100)
    await converter.encode([big_value("ttl")])
    assert r.ttl(key) > EIGHT_DAYS - 60  # and when stored again

    month = data_converter(settings(redis_port, NODE_TIMEOUT=str(30 * 86_400)))
    await month.encode([big_value("ttl")])
    assert 31 * 86_400 - 60 < r.ttl(key) <= 31 * 86_400
    longer = data_converter(settings(redis_port, PAYLOAD_STORAGE_TTL_SECONDS=str(90 * 86_400)))
    await longer.encode([big_value("ttl")])
    assert r.ttl(key) > 89 * 86_400


async def test_a_corrupted_blob_fails_clearly(redis_port: int, r: redis.Redis) -> None:
    converter = data_converter(settings(redis_port))
    [stored] = await converter.encode([big_value("corrupt")])
    key = reference(stored)["claimData"]["key"]
    blob = bytearray(r.get(key))
    blob[-10] ^= 1
    r.set(key, bytes(blob))
    with pytest.raises(RuntimeError) as failed:
        await converter.decode([stored], [dict])
    assert type(failed.value).__name__ == "StoredPayloadUnreadable"
    assert str(failed.value).startswith(f"stored payload {key} is corrupted: its bytes hash to sha256 ")


async def test_a_missing_blob_fails_clearly(redis_port: int, r: redis.Redis) -> None:
    converter = data_converter(settings(redis_port))
    [stored] = await converter.encode([big_value("missing")])
    key = reference(stored)["claimData"]["key"]
    assert r.delete(key) == 1
    with pytest.raises(RuntimeError) as failed:
        await converter.decode([stored], [dict])
    assert type(failed.value).__name__ == "StoredPayloadUnreadable"
    assert str(failed.value) == f"stored payload {key} is missing from Redis (expired or deleted)"


async def test_payloads_of_the_released_claim_check_still_decode(redis_port: int, r: redis.Redis) -> None:
    """What the released codec wrote: the payload's bytes under executor:payload:<sha256>, and a
    json/claim-check reference in the history. The new converter reads it (and renews it)."""
    original = (await data_converter(settings(redis_port, PAYLOAD_STORAGE="off")).encode([big_value("released")]))[0]
    raw = original.SerializeToString()
    key = f"executor:payload:{hashlib.sha256(raw).hexdigest()}"
    r.set(key, raw, ex=100)
    released = Payload(metadata={"encoding": b"json/claim-check"}, data=json.dumps({"claim_check": key, "bytes": len(raw)}).encode())
    assert await data_converter(settings(redis_port)).decode([released], [dict]) == [big_value("released")]
    assert r.ttl(key) > EIGHT_DAYS - 60
    r.delete(key)
    with pytest.raises(RuntimeError, match=f"^stored payload {key} is missing"):
        await data_converter(settings(redis_port)).decode([released], [dict])


async def test_off_keeps_payloads_in_the_history_and_still_reads_references(redis_port: int, r: redis.Redis) -> None:
    [stored] = await data_converter(settings(redis_port)).encode([big_value("off")])
    off = data_converter(settings(redis_port, PAYLOAD_STORAGE="off"))
    [inline] = await off.encode([big_value("off")])
    assert inline.metadata["encoding"] == b"json/plain" and len(inline.data) > BIG
    assert await off.decode([stored], [dict]) == [big_value("off")]  # written before the switch


# -- S3 (the SDK's driver, a real S3-compatible server) --------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    proc = Proc("moto", [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], sink=sys.stderr)
    wait_for_port(port, timeout=30, proc=proc)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[tuple[str, object]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    name = f"payloads-{request.node.name.replace('_', '-')[:40]}".lower()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=name)
    yield name, s3


def s3_settings(redis_port: int, s3_endpoint: str, bucket: str) -> Settings:
    return settings(redis_port, PAYLOAD_STORAGE="s3", PAYLOAD_STORAGE_S3_BUCKET=bucket, PAYLOAD_STORAGE_S3_ENDPOINT=s3_endpoint)


def objects(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


async def test_s3_stores_once_and_reads_back(redis_port: int, r: redis.Redis, s3_endpoint: str, bucket) -> None:
    name, s3 = bucket
    converter = data_converter(s3_settings(redis_port, s3_endpoint, name))
    [first] = await converter.encode([big_value("s3")])
    [again] = await converter.encode([big_value("s3")])
    ref = reference(first)
    assert ref == reference(again) and ref["driverName"] == "aws.s3driver"
    assert ref["claimData"]["bucket"] == name and ref["claimData"]["hash_algorithm"] == "sha256"
    assert objects(s3, name) == [ref["claimData"]["key"]] and r.keys("executor:payload:*") == []
    assert await converter.decode([again], [dict]) == [big_value("s3")]
    # Switched back to Redis: what S3 holds stays readable.
    assert await data_converter(settings(redis_port, PAYLOAD_STORAGE_S3_BUCKET=name, PAYLOAD_STORAGE_S3_ENDPOINT=s3_endpoint)).decode([first], [dict]) == [big_value("s3")]


async def test_s3_missing_or_corrupted_objects_fail_clearly(redis_port: int, s3_endpoint: str, bucket) -> None:
    name, s3 = bucket
    converter = data_converter(s3_settings(redis_port, s3_endpoint, name))
    [stored] = await converter.encode([big_value("s3-bad")])
    key = reference(stored)["claimData"]["key"]
    s3.put_object(Bucket=name, Key=key, Body=b"not the payload")
    with pytest.raises(RuntimeError) as corrupted:
        await converter.decode([stored], [dict])
    assert type(corrupted.value).__name__ == "StoredPayloadUnreadable"
    assert str(corrupted.value).startswith(f"stored payload is corrupted: S3StorageDriver integrity check failed [bucket={name}, key={key}]")
    s3.delete_object(Bucket=name, Key=key)
    with pytest.raises(RuntimeError) as missing:
        await converter.decode([stored], [dict])
    assert type(missing.value).__name__ == "StoredPayloadUnreadable"
    assert str(missing.value) == f"stored payload bucket={name}, key={key} is missing from S3 (expired or deleted)"



# -- on the real stack ---------------------------------------------------------------------------


def test_a_replay_renews_what_is_stored_and_uploads_nothing(stack, llm) -> None:
    """An agent node with a 300 KiB tool result; once it completed, a query makes a worker replay
    its whole history, re-encoding every command (the LLM calls' transcripts included). What that
    did in Redis: the driver's `EXPIRE` (only it sends one) renewed the stored payloads, and the
    keyspace events show none of them written again (`set`)."""
    from doubles.scripted_llm import text, tool_use
    from tests.support.stack import wait_until

    model = f"claude-storage-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    llm.script(model, tool_use(("blob", {"kilobytes": 300, "tag": tag})), text("read it all"))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model, "max_tokens": 1024}, "tools": ["blob"], "task": "Work it out."})
    assert stack.wait_event(graph, node, timeout=60)["type"] == "node.completed"
    history = stack.temporal(lambda c: c.get_workflow_handle(wid).fetch_history())
    scheduled = {  # what the workflow itself encodes, so a replay encodes again
        reference(p)["claimData"]["key"]
        for e in history.events
        for p in e.activity_task_scheduled_event_attributes.input.payloads
        if p.metadata.get("messageType") == REFERENCE_TYPE
    }
    assert scheduled  # the second LLM call's transcript holds the 300 KiB result

    r = redis.Redis(port=stack.redis_port, decode_responses=True)
    r.config_set("notify-keyspace-events", "K$")  # string commands (set), per key
    events = r.pubsub()
    events.psubscribe("__keyspace@0__:executor:payload:*")
    try:
        renewals = calls(r, "expire")
        assert stack.query(wid, "progress")["iteration"] == 2  # a closed run: the worker replays it all
        wait_until(lambda: calls(r, "expire") - renewals >= len(scheduled), timeout=60, message="the replay's payloads renewed")
        probe = f"executor:payload:probe-{tag}"
        r.set(probe, "x", ex=60)  # the one write the subscription must see, after any of the replay's
        writes: list[str] = []
        wait_until(lambda: _collect_writes(events, writes) and writes[-1].endswith(probe), timeout=30, message=f"the probe's set (seen {writes})")
        assert writes == [f"__keyspace@0__:{probe}"]  # the replay wrote no payload
    finally:
        events.close()
        r.config_set("notify-keyspace-events", "")


def _collect_writes(events, writes: list[str]) -> bool:
    while (message := events.get_message(timeout=0.1)) is not None:
        if message["type"] == "pmessage" and message["data"] == "set":
            writes.append(message["channel"])
    return bool(writes)


async def test_with_encryption_a_payload_encoded_twice_is_still_stored_once(redis_port: int, r: redis.Redis) -> None:
    """The encryption codec runs before the store: its synthetic nonce makes the same value the
    same ciphertext, so content addressing still stores it once (and a replay uploads nothing)."""
    key = base64.b64encode(bytes(range(32))).decode()
    converter = data_converter(settings(redis_port, ENCRYPTION_KEYS=f"k1={key}"))
    value = {"tag": "sealed", "text": secrets.token_hex(BIG)}  # incompressible: stays above the threshold
    [first] = await converter.encode([value])
    [again] = await converter.encode([value])
    assert reference(again) == reference(first)
    stored = r.get(reference(first)["claimData"]["key"])
    assert value["text"][:64].encode() not in stored  # ciphertext at rest
    [other] = await converter.encode([{**value, "tag": "other"}])
    assert reference(other) != reference(first)
    assert await converter.decode([again], [dict]) == [value]
