"""Emit: the node's one result event, exactly once, and the Go worker's state write-back.

One Redis transaction (WATCH/MULTI/EXEC) checks the workflow's emitted-marker, XADDs the event,
sets the marker and, on success, writes the node's output into the graph state keeping its TTL.
A retry after a crash finds the marker and returns the first event's id instead of writing again.
The state is rewritten in Python, not in a Lua script, so the orchestrator's JSON round-trips
exactly (Lua's cjson turns empty arrays into objects).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as redis
from redis.exceptions import WatchError
from temporalio import activity

from executor import keys
from executor.faults import fault_point
from executor.metrics import Metrics
from executor.redis_client import text
from executor.config import Settings
from executor.contract import NodeOutcome, ResultEvent
from executor.steps import EmitReceipt

log = logging.getLogger(__name__)


def with_node_result(state: dict[str, Any], outcome: NodeOutcome, completed_at: str) -> dict[str, Any]:
    node_states = state.get("node_states")
    if not isinstance(node_states, dict):
        node_states = {}
    previous = node_states.get(outcome.node_id)
    entry = dict(previous) if isinstance(previous, dict) else {}
    entry.update(node_id=outcome.node_id, status="completed", output=outcome.output, completed_at=completed_at)
    return {**state, "node_states": {**node_states, outcome.node_id: entry}}


class EmitActivities:
    def __init__(self, redis_client: redis.Redis, settings: Settings, metrics: Metrics | None = None):
        self._redis = redis_client
        self._settings = settings
        self._metrics = metrics or Metrics()

    @activity.defn(name="emit_result")
    async def emit_result(self, outcome: NodeOutcome) -> EmitReceipt:
        """Write the result event unless this workflow already did; idempotent across retries."""
        event = ResultEvent.from_outcome(outcome, self._settings.report_failures_on_completed)
        stream = self._settings.result_stream(outcome.status)
        marker = keys.emitted_marker(outcome.workflow_id)
        state_key = keys.graph_state(outcome.graph_id)
        payload = event.model_dump_json()
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(marker, state_key)
                    already = await pipe.get(marker)
                    if already is not None:
                        first = text(already)
                        log.info("result of %s already emitted: %s", outcome.workflow_id, first)
                        return EmitReceipt(stream=first, event_id=event.id, duplicate=True)
                    new_state, state_ttl = None, None
                    if outcome.status == "completed":
                        raw_state = await pipe.get(state_key)
                        state = _load(raw_state)
                        if state is not None:
                            new_state = with_node_result(state, outcome, event.timestamp)
                            state_ttl = await pipe.ttl(state_key)  # WATCHed: still true at EXEC
                    pipe.multi()
                    pipe.xadd(stream, {"data": payload})
                    pipe.set(marker, stream, ex=self._settings.emitted_marker_ttl_seconds)
                    if new_state is not None:
                        # Keep the orchestrator's TTL; a state written without one gets the usual
                        # 24 h. (`EXPIRE … NX` would say it in one command, but needs Redis 7: the
                        # WATCHed TTL read works on every supported server, 6.2 included.)
                        body = json.dumps(new_state, ensure_ascii=False)
                        if state_ttl is not None and state_ttl > 0:
                            pipe.set(state_key, body, keepttl=True)
                        else:
                            pipe.set(state_key, body, ex=self._settings.state_ttl_seconds)
                    results = await pipe.execute()
                    fault_point("emit.after_write")  # tests: die between the write and the ack
                    break
                except WatchError:
                    continue  # the orchestrator touched the state between our read and write
            entry_id = text(results[0])
        self._metrics.results.add(1, {"outcome": outcome.status})
        log.info("emitted %s for %s as %s %s", event.type, outcome.workflow_id, stream, entry_id)
        return EmitReceipt(stream=stream, event_id=event.id, entry_id=entry_id)


def _load(raw: bytes | str | None) -> dict[str, Any] | None:
    """The graph state if it is a JSON object; an absent or broken state is left untouched."""
    if raw is None:
        return None
    try:
        state = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("graph state is not JSON; result not written back")
        return None
    return state if isinstance(state, dict) else None
