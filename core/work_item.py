"""Work items (docs/contract.md, section 1): a stream entry, in either envelope, becomes a `WorkItem`.

The ingress parses entries here. An entry that cannot become a work item raises `MalformedEntry`,
with the graph and node ids when they can be recovered, so its failure still reaches the
orchestrator. The workflow id is derived from the work item: a redelivery maps to the same one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from core.errors import ContractError, readable
from core.node_config import MAX_NESTING, nested_deeper_than


def escape_id(value: str) -> str:
    """A graph or node id inside a workflow id: `%` and `:` (the separator) %-escaped, so that
    `a:b`/`c` and `a`/`b:c` get different workflow ids. Ids without them are unchanged."""
    return value.replace("%", "%25").replace(":", "%3A")


def unescape_id(value: str) -> str:
    """The inverse of `escape_id` (for the ids logs read back from a workflow id)."""
    return value.replace("%3A", ":").replace("%25", "%")



def _is_text(value: str) -> bool:
    """False for strings holding lone surrogates (JSON's `\\ud800` escape parses into one): no
    Redis key, Temporal id or JSON document can carry them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True




class WorkItem(BaseModel):
    """One executor node to run, normalised from either envelope.

    `config` is None for the orchestrator envelope (1b): the resolve step reads it from the graph
    state. `inputs` and `node_states` are what the envelope carried for templates.
    """

    graph_id: str = Field(min_length=1)
    node_id: str = Field(min_length=1)
    envelope: Literal["executor", "orchestrator"]
    event_id: str | None = None
    stream: str
    entry_id: str
    config: dict[str, Any] | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    node_states: dict[str, Any] = Field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        """Deterministic per work item, so a redelivery maps to the same workflow."""
        key = self.event_id or f"{self.stream}@{self.entry_id}"
        return f"node:{escape_id(self.graph_id)}:{escape_id(self.node_id)}:{key}"


class _ExecutorEnvelope(BaseModel):
    """1a: what the Go executor worker reads."""

    graph_id: str = Field(min_length=1)
    node_id: str = Field(min_length=1)
    node_type: str | None = None
    id: str | None = None
    config: dict[str, Any]
    dependencies: list[str] = Field(default_factory=list)


class _OrchestratorData(BaseModel):
    node_id: str = Field(min_length=1)
    node_type: str | None = None
    graph_id: str | None = None
    state: dict[str, Any] | None = None
    node_state: dict[str, Any] | None = None


class _OrchestratorEnvelope(BaseModel):
    """1b: what the orchestrator publishes on `dago:events:executor.work`."""

    id: str | None = None
    type: str | None = None
    timestamp: str | None = None
    execution_id: str | None = None
    data: _OrchestratorData


class MalformedEntry(ContractError):
    """A stream entry that cannot become a work item; ids kept when they could be recovered."""

    def __init__(self, reason: str, graph_id: str | None = None, node_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.graph_id = graph_id
        self.node_id = node_id


def recover_ids(doc: Any) -> tuple[str | None, str | None]:
    """Best effort ids of a broken document, so its failure can still reach the orchestrator."""
    if not isinstance(doc, dict):
        return None, None
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    graph = doc.get("graph_id") or data.get("graph_id") or doc.get("execution_id")
    node = doc.get("node_id") or data.get("node_id")
    ok = lambda v: v if isinstance(v, str) and v and _is_text(v) else None  # noqa: E731
    return ok(graph), ok(node)


def entry_size(fields: dict[bytes | str, bytes | str]) -> int:
    """Bytes of a stream entry's values, all of them: an entry carries `data` only, by the
    contract, but nothing stops a producer from adding a 10 MB field beside it."""
    return sum(len(value) for value in fields.values())


def parse_work_entry(
    fields: dict[bytes | str, bytes | str], *, stream: str, entry_id: str, max_bytes: int
) -> WorkItem:
    """Turn one stream entry (its single `data` field) into a `WorkItem` or raise MalformedEntry."""
    size = entry_size(fields)
    if size > max_bytes:
        raise MalformedEntry(f"entry too large: {size} bytes (limit {max_bytes})")
    # Field names are bytes from a producer: only `data` matters, the others are named readably.
    decoded = {(k.decode(errors="backslashreplace") if isinstance(k, bytes) else k): v for k, v in fields.items()}
    if "data" not in decoded:
        names = ", ".join(sorted(decoded)) or "none"
        raise MalformedEntry(f"entry has no 'data' field (fields: {names})")
    raw = decoded["data"]
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise MalformedEntry(f"data is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    too_deep = f"data is nested more than {MAX_NESTING} levels deep"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedEntry(f"data is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # deeper than the parser goes (about 1000 levels): no ids to recover
        raise MalformedEntry(too_deep) from None
    if not isinstance(doc, dict):
        raise MalformedEntry(f"data must be a JSON object, got {type(doc).__name__}")
    if nested_deeper_than(doc, MAX_NESTING):
        raise MalformedEntry(too_deep, *recover_ids(doc))
    graph_id, node_id = recover_ids(doc)
    try:
        if isinstance(doc.get("data"), dict) and "config" not in doc:
            env = _OrchestratorEnvelope.model_validate(doc)
            graph = env.data.graph_id or env.execution_id
            if not graph:
                raise MalformedEntry("work item: execution_id or data.graph_id required", None, node_id)
            return WorkItem(
                graph_id=graph,
                node_id=env.data.node_id,
                envelope="orchestrator",
                event_id=env.id,
                stream=stream,
                entry_id=entry_id,
                inputs=env.data.state or {},
                node_states=env.data.node_state or {},
            )
        executor = _ExecutorEnvelope.model_validate(doc)
        return WorkItem(
            graph_id=executor.graph_id,
            node_id=executor.node_id,
            envelope="executor",
            event_id=executor.id,
            stream=stream,
            entry_id=entry_id,
            config=executor.config,
        )
    except ValidationError as exc:
        raise MalformedEntry(readable(exc, "work item"), graph_id, node_id) from None
