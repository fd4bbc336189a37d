"""The long-loop row: one agent node of 100 rounds whose conversation grows to ~800 KB.

Each round the model (bench/llm_server.py, `bench-long-r<R>-kb<K>` models) asks for the `blob`
tool of the tests' MCP server (tests/support/mcp_server.py, over HTTP), which returns K KiB of
text; after R rounds it answers. So the conversation grows by ~8 KiB a round, to ~800 KiB: the
case where re-sending the transcript with every call made storage grow with the square of the
loop. Usage is metered with a prompt cache (doubles/metering.py), as the provider would bill it.

Measured: the bytes of every `call_llm` input in the history (max, mean), the whole history's
bytes, what the run left in external storage (payload blobs and transcript nodes in Redis:
their sizes), input tokens billed with caching (input + 1.25 × cache writes + 0.1 × cache reads)
and without (every prompt token at the full price: the same prompts, no cache), and wall time.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
import uuid
from typing import Any

from bench.stack import ROOT, BenchStack
from bench.workloads import ResultReader, envelope, watched
from executor.local_services import free_port, wait_for_port

ROUNDS = 100
KIB_PER_ROUND = 8
STORED = ("executor:payload:*", "executor:transcript:*")
TARGETS = {"max_llm_input_bytes": 10 * 1024, "storage_per_conversation": 2.0, "billed_share": 0.20}


def model(rounds: int, kib: int) -> str:
    return f"bench-long-r{rounds}-kb{kib}-{uuid.uuid4().hex[:6]}"


async def stored(redis: Any) -> dict[bytes, int]:
    keys = []
    for pattern in STORED:
        keys += [key async for key in redis.scan_iter(match=pattern, count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.strlen(key)
        sizes = await pipe.execute()
    return dict(zip(keys, sizes))


async def histories(client: Any, workflow_id: str) -> list[list[Any]]:
    """Every run's events (continue-as-new starts new runs), oldest first."""
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda w: w.start_time)
    return [list((await client.get_workflow_handle(workflow_id, run_id=w.run_id).fetch_history()).events) for w in runs]


def conversation(llm_url: str, name: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{llm_url}/conversation/{name}", timeout=10) as reply:
        return json.loads(reply.read())


async def measure(
    stack: BenchStack, redis: Any, reader: ResultReader, client: Any, *, rounds: int = ROUNDS, kib: int = KIB_PER_ROUND, patches: str = "",
) -> dict[str, Any]:
    """One loop; `patches="no-transcripts"`: the same loop as it ran before transcripts."""
    mcp_port = free_port()
    mcp = stack.spawn("mcp-blob", [sys.executable, str(ROOT / "tests" / "support" / "mcp_server.py"), "--http", "--port", str(mcp_port)])
    wait_for_port(mcp_port, proc=mcp)
    tq, stream = f"bench-long-{uuid.uuid4().hex[:6]}", f"bench.long.{uuid.uuid4().hex[:6]}"
    services = {"MCP_SERVERS": f"docs=http://127.0.0.1:{mcp_port}/mcp"}
    worker = stack.start_worker("worker-long", tq, stream, stack.llm_url, patches=patches, **services)
    ingress = stack.start_ingress("ingress-long", tq, stream, INGRESS_BLOCK_MS="200", **services)
    try:
        name = model(rounds, kib)
        doc = envelope({"llm_config": {"model": name, "max_tokens": 1024}, "tools": ["blob"], "task": "Read every part.", "max_iterations": rounds + 1})
        before = await stored(redis)
        future = reader.expect(doc["graph_id"])
        t0 = time.perf_counter()
        await redis.xadd(stream, {"data": json.dumps(doc)})
        done, event = await watched(future, watch=[worker.proc, ingress.proc, mcp], timeout=240, what="the long loop")
        wall = done - t0
        if event.get("type") != "node.completed":
            raise RuntimeError(f"the long loop failed: {event.get('data', {}).get('error')}")
        output = event["data"]["output"]
        runs = await histories(client, f"node:{doc['graph_id']}:n1:{doc['id']}")
        events = [e for run in runs for e in run]
        inputs = [
            e.activity_task_scheduled_event_attributes.input.ByteSize()
            for e in events
            if e.HasField("activity_task_scheduled_event_attributes") and e.activity_task_scheduled_event_attributes.activity_type.name == "call_llm"
        ]
        after = await stored(redis)
        storage = sum(size for key, size in after.items() if key not in before)
        usage = output["usage"]
        read, written, plain = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0), usage["input_tokens"]
        billed = plain + 1.25 * written + 0.1 * read
        uncached = plain + written + read
        talk = conversation(stack.llm_url, name)
        return {
            "label": "before transcripts (no-transcripts patch)" if patches else "as shipped",
            "patches": patches or "(none)",
            "rounds": rounds,
            "kib_per_round": kib,
            "model_calls": len(inputs),
            "runs": len(runs),
            "conversation_bytes": talk["bytes"],
            "conversation_messages": talk["messages"],
            "llm_input_bytes": {"max": max(inputs), "mean": round(sum(inputs) / len(inputs)), "first": inputs[0], "last": inputs[-1]},
            "history_bytes": sum(e.ByteSize() for e in events),
            "history_events": len(events),
            "storage_bytes": storage,
            "storage_keys": len([key for key in after if key not in before]),
            "storage_per_conversation": round(storage / talk["bytes"], 2),
            "input_tokens": {"plain": plain, "cache_write": written, "cache_read": read, "billed_equivalent": round(billed), "uncached": uncached},
            "billed_share": round(billed / uncached, 3),
            "wall_seconds": round(wall, 1),
            "targets": TARGETS,
        }
    finally:
        for proc in (ingress.proc, worker.proc, mcp):
            stack.stop(proc)


def lines(row: dict[str, Any]) -> str:
    i, t = row["llm_input_bytes"], row["input_tokens"]
    return "\n".join([
        f"long loop, {row['label']}: {row['rounds']} rounds × {row['kib_per_round']} KiB tool result = {row['conversation_bytes'] / 1024:.0f} KiB conversation "
        f"({row['conversation_messages']} messages, {row['model_calls']} model calls, {row['runs']} run(s)), wall {row['wall_seconds']} s",
        f"  history bytes per model call: max {i['max']} B, mean {i['mean']} B (first {i['first']}, last {i['last']}); target < {TARGETS['max_llm_input_bytes']} B",
        f"  history: {row['history_bytes'] / 1024:.0f} KiB in {row['history_events']} events",
        f"  external storage: {row['storage_bytes'] / 1024:.0f} KiB in {row['storage_keys']} keys = {row['storage_per_conversation']}× the conversation; target < {TARGETS['storage_per_conversation']}×",
        f"  input tokens: billed {t['billed_equivalent']} token-equivalents with caching ({t['plain']} plain, {t['cache_write']} written, {t['cache_read']} read) "
        f"vs {t['uncached']} uncached = {row['billed_share'] * 100:.1f} %; target ≤ {TARGETS['billed_share'] * 100:.0f} %",
    ])
