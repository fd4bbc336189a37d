"""Long agent loops on the real stack: each `call_llm` input carries a transcript reference plus
the new tool results, so history bytes per model call stay flat and a big tool result is stored
once or twice, not once per round (adapters/transcript_store.py, docs/agent.md "Transcripts").

Two workers: the shared stack's (continue-as-new every 60 events, the default conversation cache),
and one of this module's on a queue and stream of its own that never continues as new within these
loops and keeps no conversation in memory (`TRANSCRIPT_CACHE_SIZE=0`), so every call rebuilds its
conversation from Redis and the storage counts are the loop's alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.api.history.v1 import HistoryEvent

from doubles.scripted_llm import ScriptedLLM, text, tool_use
from tests.support.stack import Stack, wait_until

KIB = 1024
STORED = ("executor:payload:*", "executor:transcript:*")


def model_name() -> str:
    return f"claude-long-{uuid.uuid4().hex[:8]}"


def agent(model: str, tools: list[str], rounds: int) -> dict[str, Any]:
    return {"llm_config": {"model": model, "max_tokens": 1024}, "tools": tools, "task": "Read it all.", "max_iterations": rounds + 1}


@dataclass
class Lane:
    """This module's worker and ingress: their own task queue and work stream."""

    stack: Stack
    env: dict[str, str]
    stream: str

    def start_worker(self) -> None:
        started = self._polling()
        self.stack.start_service("worker", "worker-long", **self.env)
        wait_until(lambda: self._polling() > started, timeout=90, interval=0.5, message="the long-loop worker polling")

    def _polling(self) -> int:
        with open(self.stack.log.name) as log:
            return log.read().count("worker worker-long polling")

    def stop_worker(self) -> None:
        self.stack.procs.pop("worker-long").stop()

    def submit(self, config: dict[str, Any]) -> tuple[str, str]:
        graph, event_id = f"g-{uuid.uuid4().hex[:10]}", str(uuid.uuid4())
        self.stack.submit({"graph_id": graph, "node_id": "n1", "node_type": "executor", "config": config, "id": event_id}, stream=self.stream)
        return graph, f"node:{graph}:n1:{event_id}"


@pytest.fixture(scope="module")
def lane(stack: Stack) -> Iterator[Lane]:
    stream = f"executor.long-{uuid.uuid4().hex[:6]}"
    env = {"TEMPORAL_TASK_QUEUE": f"long-{uuid.uuid4().hex[:6]}", "WORK_STREAMS": stream, "CONTINUE_AS_NEW_EVENTS": "5000", "TRANSCRIPT_CACHE_SIZE": "0"}
    found = Lane(stack, env, stream)
    found.start_worker()
    stack.start_service("ingress", "ingress-long", **env)
    yield found
    for name in ("ingress-long", "worker-long"):
        if name in stack.procs:
            stack.procs.pop(name).stop()


def run_histories(stack: Stack, workflow_id: str) -> list[list[HistoryEvent]]:
    """The events of every run of a workflow (continue-as-new starts new runs), oldest first."""

    async def fetch(client: Any) -> list[list[HistoryEvent]]:
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        runs.sort(key=lambda w: w.start_time)
        return [list((await client.get_workflow_handle(workflow_id, run_id=w.run_id).fetch_history()).events) for w in runs]

    return stack.temporal(fetch)


def llm_inputs(stack: Stack, workflow_id: str) -> list[int]:
    """The bytes each call_llm input takes in the history (inline payloads or storage references)."""
    return [
        e.activity_task_scheduled_event_attributes.input.ByteSize()
        for events in run_histories(stack, workflow_id)
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes") and e.activity_task_scheduled_event_attributes.activity_type.name == "call_llm"
    ]


def stored(stack: Stack) -> dict[str, int]:
    """Payload blobs and transcript nodes in Redis, by key: their sizes in bytes."""
    r = stack.redis
    found = [key for pattern in STORED for key in r.scan_iter(match=pattern, count=1000)]
    return dict(zip(found, (r.strlen(key) for key in found)))


def conversation_bytes(llm: ScriptedLLM, model: str) -> int:
    last = llm.requests(model)[-1].body["messages"]
    return sum(len(json.dumps(m)) for m in last)


def assert_the_model_saw_everything(llm: ScriptedLLM, model: str, rounds: int, tags: list[str]) -> None:
    requests = llm.requests(model)
    assert [len(r.body["messages"]) for r in requests] == [1 + 2 * n for n in range(rounds + 1)]
    last = requests[-1].body["messages"]
    results = [m["content"][0]["content"] for m in last if m["role"] == "user" and isinstance(m["content"], list)]
    assert [r[: len(t)] for r, t in zip(results, tags)] == tags  # every tool result, in order, whole
    assert all(m["role"] == "assistant" and m["content"][0]["type"] == "tool_use" for m in last[1::2])


def test_history_bytes_per_model_call_stay_flat_as_the_conversation_grows(stack: Stack, llm: ScriptedLLM) -> None:
    """20 rounds of 5 KiB tool results (~100 KiB, under the storage threshold, so all of it in the
    history), on the shared worker: it continues as new every few rounds, and the transcript
    reference travels with the carried state."""
    model, rounds = model_name(), 20
    tags = [f"r{n:02d}-{uuid.uuid4().hex[:6]}" for n in range(rounds)]
    llm.script(model, *[tool_use(("blob", {"kilobytes": 5, "tag": tag})) for tag in tags], text("done"))
    graph, node, wid = stack.submit_agent(agent(model, ["blob"], rounds))
    event = stack.wait_event(graph, node, timeout=300)
    assert event["type"] == "node.completed" and event["data"]["output"]["iterations"] == rounds + 1, event
    assert event["data"]["runs"] >= 2  # continued as new on the way

    sizes = llm_inputs(stack, wid)
    assert len(sizes) == rounds + 1
    assert max(sizes) < 10 * KIB, sizes
    assert max(sizes[2:]) - min(sizes[2:]) < 1 * KIB, sizes  # one tool result each: flat, whatever the round
    assert_the_model_saw_everything(llm, model, rounds, tags)


def test_a_big_tool_result_is_stored_once_and_a_replay_uploads_nothing(lane: Lane, stack: Stack, llm: ScriptedLLM) -> None:
    """A 300 KiB document in round 1, then 19 small rounds: the document is stored as the tool's
    result and once more as the call_llm input that first carried it, never again."""
    model, rounds = model_name(), 20
    tags = [f"doc-{uuid.uuid4().hex[:6]}"] + [f"r{n:02d}-{uuid.uuid4().hex[:6]}" for n in range(1, rounds)]
    steps = [tool_use(("blob", {"kilobytes": 300 if n == 0 else 1, "tag": tag})) for n, tag in enumerate(tags)]
    llm.script(model, *steps, text("done"))
    before = stored(stack)
    graph, wid = lane.submit(agent(model, ["blob"], rounds))
    event = stack.wait_event(graph, timeout=300)
    assert event["type"] == "node.completed" and event["data"]["output"]["iterations"] == rounds + 1, event
    assert_the_model_saw_everything(llm, model, rounds, tags)

    after = stored(stack)
    new = {key: size for key, size in after.items() if key not in before}
    conversation = conversation_bytes(llm, model)
    assert conversation > 300 * KIB
    assert sum(new.values()) < 2.5 * conversation, (sum(new.values()), conversation, sorted(new.values())[-5:])
    assert max(llm_inputs(stack, wid)) < 10 * KIB

    # a replay in a fresh worker (a query on the closed run replays its whole history)
    lane.stop_worker()
    lane.start_worker()
    sent_before = stack.redis.info("stats")["total_net_input_bytes"]
    progress = wait_until(lambda: stack.query(wid, "progress"), timeout=120, message="the query answered by a replay")
    assert progress["iteration"] == rounds + 1
    uploaded = stack.redis.info("stats")["total_net_input_bytes"] - sent_before
    assert uploaded < 64 * KIB, uploaded  # key probes and polls, no document (300 KiB)
    assert stored(stack) == after


def test_a_missing_transcript_is_resent_inline_once(lane: Lane, stack: Stack, llm: ScriptedLLM) -> None:
    """The chain's nodes deleted mid-loop: the next call fails with TranscriptMissing (no model
    call made), the loop sends that call's whole conversation inline, and goes on by reference."""
    model, gate = model_name(), f"gate-{uuid.uuid4().hex[:6]}"
    tag = f"r-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("blob", {"kilobytes": 2, "tag": tag})), tool_use(("gate", {"name": gate})), tool_use(("blob", {"kilobytes": 1, "tag": tag})), text("done"))
    held = stack.gate(gate)
    graph, wid = lane.submit(agent(model, ["blob", "gate"], 3))
    wait_until(lambda: any(c.get("name") == gate for c in stack.mcp_calls("gate_started")), timeout=120, message="the gate tool called")
    nodes = list(stack.redis.scan_iter(match="executor:transcript:*", count=1000))
    assert nodes and stack.redis.delete(*nodes) == len(nodes)
    held.unlink()

    event = stack.wait_event(graph, timeout=180)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "done", event
    assert [len(r.body["messages"]) for r in llm.requests(model)] == [1, 3, 5, 7]  # the failed attempt never reached the model

    [events] = run_histories(stack, wid)
    failures = [e.activity_task_failed_event_attributes.failure for e in events if e.HasField("activity_task_failed_event_attributes")]
    assert [f.application_failure_info.type for f in failures] == ["TranscriptMissing"]
    assert "is missing from Redis" in failures[0].message
    sizes = llm_inputs(stack, wid)
    assert len(sizes) == 5  # four calls and the one resent
    assert sizes[3] > sizes[2] + 2 * KIB  # the resent one carries the whole conversation (its 2 KiB result too)
    assert sizes[4] < sizes[3]  # and the next one is back to a reference plus its tool result


def test_the_worker_that_stored_a_transcript_rebuilds_it_without_reading_redis(stack: Stack) -> None:
    """The conversation cache: the worker that stored a node rebuilds the next call's conversation
    even with the node gone from Redis (it reads nothing); a worker without it in its cache reads
    the chain from Redis (the same messages), and says which node is missing once it is gone."""
    import asyncio

    from adapters.payload_storage import retention_seconds
    from adapters.redis_client import connect as redis_connect
    from adapters.settings import Settings
    from adapters.temporal_client import data_converter
    from adapters.transcript_store import TranscriptStore, TranscriptUnavailable
    from core.step_io import LlmRequest

    settings = Settings.from_env(stack.env())
    first = [{"role": "user", "content": f"read {uuid.uuid4().hex}"}]
    turn = [{"type": "tool_use", "id": "toolu_1", "name": "blob", "input": {"kilobytes": 1}}]
    results = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x" * 3000}]}]
    whole = [*first, {"role": "assistant", "content": turn}, *results]

    async def scenario() -> tuple[list[Any], list[Any], list[Any], str]:
        redis = redis_connect(settings)
        try:
            converter = data_converter(settings)
            ours, other = (TranscriptStore(redis, converter, retention_seconds(settings), cache_size=size) for size in (64, 0))
            ref = await ours.save(LlmRequest(model="m", messages=first, keep_transcript=True), first, turn)
            assert ref.messages == 2 and await redis.exists(ref.key)
            request = LlmRequest(model="m", messages=results, transcript=ref)
            theirs = await other.conversation(request)  # read from Redis
            await redis.delete(ref.key)
            mine = await ours.conversation(request)  # from its cache: Redis not needed
            try:
                gone = await other.conversation(request)
            except TranscriptUnavailable as err:
                return theirs, mine, [], str(err)
            return theirs, mine, gone, ""
        finally:
            await redis.aclose()

    theirs, mine, gone, error = asyncio.run(scenario())
    assert theirs == whole and mine == whole and gone == []
    assert "is missing from Redis" in error and "executor:transcript:" in error


async def test_a_transcript_that_cannot_be_stored_costs_no_second_model_call(llm: ScriptedLLM) -> None:
    """Redis down after the model answered: the reply comes back without a reference (the next
    call sends the conversation inline) instead of failing the activity, whose retry would call
    (and pay) the model again."""
    import redis.asyncio as aioredis
    from temporalio.contrib.pydantic import pydantic_data_converter

    from activities.llm import LlmActivities, build_providers
    from adapters.settings import Settings
    from adapters.transcript_store import TranscriptStore
    from core.step_io import LlmRequest
    from executor.local_services import free_port

    model = f"claude-nostore-{uuid.uuid4().hex[:6]}"
    llm.script(model, text("answered"))
    providers = build_providers(Settings.from_env({"LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "k"}))
    nowhere = aioredis.Redis(port=free_port(), socket_connect_timeout=2)  # nothing listens there
    steps = LlmActivities(providers, transcripts=TranscriptStore(nowhere, pydantic_data_converter, ttl_seconds=60))
    try:
        reply = await steps.call_llm(LlmRequest(model=model, messages=[{"role": "user", "content": "go"}], keep_transcript=True))
    finally:
        await providers.close()
        await nowhere.aclose()
    assert reply.content == [{"type": "text", "text": "answered"}] and reply.transcript is None
    assert llm.calls(model) == 1
