"""Work items: both envelopes parse, and a broken entry names its reason and keeps its ids."""

from __future__ import annotations

import json

import pytest

from core.work_item import MalformedEntry, parse_work_entry


def entry(doc: object, **kw: object) -> dict:
    data = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
    return parse_work_entry({b"data": data}, stream="executor.work", entry_id="1-0", max_bytes=kw.get("max_bytes", 10_000))


def test_both_envelopes_parse_to_work_items() -> None:
    a = entry({"graph_id": "g", "node_id": "n", "node_type": "executor", "config": {"tool_name": "t"}, "dependencies": ["x"]})
    assert a.envelope == "executor" and a.config == {"tool_name": "t"}
    assert a.workflow_id == "node:g:n:executor.work@1-0"
    b = entry(
        {"id": "e-1", "type": "node.work", "execution_id": "g", "data": {"node_id": "n", "state": {"k": 1}, "node_state": {}}}
    )
    assert b.envelope == "orchestrator" and b.config is None and b.inputs == {"k": 1}
    assert b.workflow_id == "node:g:n:e-1"


@pytest.mark.parametrize(
    ("raw", "reason", "ids"),
    [
        ("{oops", "data is not JSON", (None, None)),
        ("[1, 2]", "data must be a JSON object, got list", (None, None)),
        (b"\xff\xfe", "data is not valid UTF-8", (None, None)),
        ({"graph_id": "g", "node_id": "n", "config": 5}, "work item: config: Input should be a valid dictionary", ("g", "n")),
        (
            {"graph_id": "", "node_id": "n", "config": {}},
            "work item: graph_id: String should have at least 1 character",
            (None, "n"),
        ),
        ({"graph_id": 7, "node_id": "n", "config": {}}, "work item: graph_id: Input should be a valid string", (None, "n")),
        ({"data": {"node_id": "n"}}, "work item: execution_id or data.graph_id required", (None, "n")),
        ({"execution_id": "g", "data": {"graph_id": "g"}}, "work item: data.node_id: Field required", ("g", None)),
    ],
)
def test_malformed_entries_name_the_reason_and_recover_ids(raw: object, reason: str, ids: tuple) -> None:
    with pytest.raises(MalformedEntry) as err:
        entry(raw)
    assert err.value.reason.startswith(reason)
    assert (err.value.graph_id, err.value.node_id) == ids


def test_entry_without_data_field_and_oversized_entry() -> None:
    with pytest.raises(MalformedEntry, match="entry has no 'data' field"):
        parse_work_entry({b"payload": b"{}"}, stream="s", entry_id="1-0", max_bytes=100)
    with pytest.raises(MalformedEntry, match="entry too large: 2000 bytes"):
        entry("x" * 2000, max_bytes=1000)
