"""One workflow's history as the bench reports it: events and bytes, and a timeline.

Bytes are the protobuf size of the events (what the server stores and replays), summed. The
timeline gives each event's time in ms after the first one, with the activity type or marker name,
to see where a node's latency goes (docs/performance.md, "the agent p50 with LOCAL_STEPS").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus


def _detail(event: Any) -> str:
    kind = event.WhichOneof("attributes")
    attrs = getattr(event, kind) if kind else None
    if attrs is None:
        return ""
    if hasattr(attrs, "activity_type") and attrs.activity_type.name:
        return attrs.activity_type.name
    if hasattr(attrs, "marker_name") and attrs.marker_name:
        return attrs.marker_name
    return ""


async def describe(client: Client, workflow_id: str) -> dict[str, Any]:
    """Events, bytes and a timeline of one workflow, once it has closed (ours emits its event one
    workflow task before it closes: the history is read after that last task)."""
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + 30
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    history = await handle.fetch_history()
    events = list(history.events)
    t0 = events[0].event_time.ToMicroseconds()
    by_type: dict[str, int] = {}
    timeline = []
    for e in events:
        name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        by_type[name] = by_type.get(name, 0) + 1
        timeline.append({"ms": round((e.event_time.ToMicroseconds() - t0) / 1000, 1), "event": name, "detail": _detail(e), "bytes": e.ByteSize()})
    return {
        "workflow_id": workflow_id,
        "events": len(events),
        "bytes": sum(e.ByteSize() for e in events),
        "workflow_tasks": by_type.get("WORKFLOW_TASK_COMPLETED", 0),
        "activities": by_type.get("ACTIVITY_TASK_SCHEDULED", 0),
        "markers": by_type.get("MARKER_RECORDED", 0),
        "timeline": timeline,
    }


def segments(info: dict[str, Any]) -> dict[str, float]:
    """Where one history's time went, in ms: workflow tasks waiting to be picked up (scheduled →
    started), workflow tasks running in the worker (started → completed; local activities run
    inside them), activities (scheduled → completed), and when the first model call was scheduled."""
    out = {"wft_dispatch_ms": 0.0, "wft_running_ms": 0.0, "activities_ms": 0.0, "first_wft_ms": 0.0, "to_first_model_call_ms": 0.0, "end_ms": 0.0}
    scheduled_wft = started_wft = scheduled_act = None
    for t in info["timeline"]:
        event, ms = t["event"], t["ms"]
        if event == "WORKFLOW_TASK_SCHEDULED":
            scheduled_wft = ms
        elif event == "WORKFLOW_TASK_STARTED" and scheduled_wft is not None:
            out["wft_dispatch_ms"] += ms - scheduled_wft
            started_wft = ms
        elif event == "WORKFLOW_TASK_COMPLETED" and started_wft is not None:
            out["wft_running_ms"] += ms - started_wft
            if not out["first_wft_ms"]:
                out["first_wft_ms"] = ms - started_wft
        elif event == "ACTIVITY_TASK_SCHEDULED":
            scheduled_act = ms
            if not out["to_first_model_call_ms"] and ("llm" in t["detail"] or "model_request" in t["detail"]):
                out["to_first_model_call_ms"] = ms
        elif event == "ACTIVITY_TASK_COMPLETED" and scheduled_act is not None:
            out["activities_ms"] += ms - scheduled_act
        out["end_ms"] = ms
    return {k: round(v, 1) for k, v in out.items()}


def median_segments(infos: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each segment over several histories (one history is one noisy sample)."""
    each = [segments(i) for i in infos]
    keys = each[0].keys() if each else []
    return {k: sorted(e[k] for e in each)[len(each) // 2] for k in keys}


def timeline_text(info: dict[str, Any]) -> str:
    return "\n".join(f"  {t['ms']:8.1f} ms  {t['event']:<36} {t['detail']}" for t in info["timeline"])
