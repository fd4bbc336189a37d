"""Emit: the node's one result event, exactly once, and the Go worker's state write-back.

One Redis transaction (adapters/result_marker.py, shared with every other writer of result
events) checks the workflow's emitted-marker, XADDs the event, sets the marker and, on success,
writes the node's output into the graph state keeping its TTL. A retry after a crash finds the
marker and returns the first event's stream instead of writing again.
The state is rewritten in Python, not in a Lua script, so the orchestrator's JSON round-trips
exactly (Lua's cjson turns empty arrays into objects).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from temporalio import activity

from core import keys
from adapters import result_marker
from adapters.metrics import Metrics
from adapters.settings import Settings
from core.result_event import NodeOutcome, ResultEvent
from core.step_io import EmitReceipt

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
        state_key = keys.graph_state(outcome.graph_id)

        async def write_back(pipe: Pipeline) -> Callable[[Pipeline], None] | None:
            """A completed node's output goes into the graph state (the Go worker did it), keeping
            the orchestrator's TTL; a state written without one gets the usual 24 h. (`EXPIRE … NX`
            would say it in one command, but needs Redis 7: the WATCHed TTL read works on 6.2.)"""
            state = _load(await pipe.get(state_key))
            if state is None:
                return None
            body = json.dumps(with_node_result(state, outcome, event.timestamp), ensure_ascii=False)
            ttl = await pipe.ttl(state_key)
            if ttl > 0:
                return lambda p: p.set(state_key, body, keepttl=True)
            return lambda p: p.set(state_key, body, ex=self._settings.state_ttl_seconds)

        reservation = await result_marker.write_once(
            self._redis,
            outcome.workflow_id,
            stream,
            event,
            self._settings.emitted_marker_ttl_seconds,
            watch=[state_key],  # the orchestrator may touch the state between our read and write
            prepare=write_back if outcome.status == "completed" else None,
        )
        if not reservation.written:
            log.info("result of %s already emitted: %s", outcome.workflow_id, reservation.stream)
            return EmitReceipt(stream=reservation.stream, event_id=event.id, duplicate=True)
        self._metrics.results.add(1, {"outcome": outcome.status})
        log.info("emitted %s for %s as %s %s", event.type, outcome.workflow_id, stream, reservation.entry_id)
        return EmitReceipt(stream=stream, event_id=event.id, entry_id=reservation.entry_id)


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
