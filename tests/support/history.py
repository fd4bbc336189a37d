"""Reading a node's history in tests: its local steps' markers and its search attributes."""

from __future__ import annotations

import json
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.converter import default as default_converter


def local_steps(history: WorkflowHistory) -> list[dict[str, Any]]:
    """The SDK's bookkeeping of each local activity (activity_type, attempt, …), in order."""
    return [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]


def start_attributes(history: WorkflowHistory) -> dict[str, str]:
    """Our search attributes the run started with."""
    fields = history.events[0].workflow_execution_started_event_attributes.search_attributes.indexed_fields
    convert = default_converter().payload_converter
    return {name: convert.from_payload(payload) for name, payload in fields.items() if name.startswith("Dago")}


def upserts(history: WorkflowHistory) -> list[list[str]]:
    """The names each search-attribute upsert set, in order."""
    return [
        sorted(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
