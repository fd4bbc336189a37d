"""The wire contract with the DA Orchestrator (shared/CONTRACT.md), in one place.

Ingress parses stream entries into a `WorkItem`; the workflow hands it to activities; the emit
activity turns a `NodeOutcome` into a `ResultEvent`. Every shape that crosses a process or a
Temporal boundary is a model defined here. Parsing never raises a traceback at a user: it raises
`ContractError` with a message such as ``node config: tool_name required for tool mode``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Mode = Literal["agent", "llm", "tool"]
MODES: tuple[Mode, ...] = ("agent", "llm", "tool")

DEFAULT_TASK = "Complete the assigned task."
DEFAULT_SYSTEM = "You are a helpful AI assistant with access to tools."

# Deeper documents cannot cross Temporal: pydantic's JSON parser stops at 200 levels (a worker
# could not even decode its workflow's input), and the payloads wrap the config in a few more.
MAX_NESTING = 100
# A model name travels into search attributes and UI summaries, which Temporal bounds (a search
# attribute value too long fails the workflow task on every attempt: the node would hang).
MAX_MODEL_CHARS = 256
MAX_SUMMARY_CHARS = 400  # one line in the Temporal UI


def node_summary(graph_id: str, node_id: str, mode: str | None = None, model: str | None = None) -> str:
    """How a node reads in the Temporal UI and the logs: `graph g · node n · mode agent · model m`,
    cut to `MAX_SUMMARY_CHARS` whatever the work item carries."""
    parts = [f"graph {graph_id}", f"node {node_id}"]
    if mode:
        parts.append(f"mode {mode}")
    if model and mode != "tool":
        parts.append(f"model {model}")
    summary = " · ".join(parts)
    return summary if len(summary) <= MAX_SUMMARY_CHARS else summary[: MAX_SUMMARY_CHARS - 1] + "…"


def escape_id(value: str) -> str:
    """A graph or node id inside a workflow id: `%` and `:` (the separator) %-escaped, so that
    `a:b`/`c` and `a`/`b:c` get different workflow ids. Ids without them are unchanged."""
    return value.replace("%", "%25").replace(":", "%3A")


def unescape_id(value: str) -> str:
    """The inverse of `escape_id` (for the ids logs read back from a workflow id)."""
    return value.replace("%3A", ":").replace("%25", "%")


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether a JSON value has more than `limit` levels of objects and arrays (iterative: a deep
    value must not exhaust the interpreter's stack while being measured)."""
    if not isinstance(value, (dict, list)):
        return False
    pending = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        children = current.values() if isinstance(current, dict) else current
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _is_text(value: str) -> bool:
    """False for strings holding lone surrogates (JSON's `\\ud800` escape parses into one): no
    Redis key, Temporal id or JSON document can carry them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ContractError(ValueError):
    """A work item or node config that breaks the contract; the message is meant for humans."""


def readable(error: ValidationError, prefix: str) -> str:
    """One line per problem, `prefix: field.path: what is wrong`, no pydantic boilerplate."""
    parts = []
    for err in error.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}: {loc}: {message}" if loc else f"{prefix}: {message}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Node config (CONTRACT 2)


class LlmConfig(BaseModel):
    """`llm_config` of llm and agent nodes. `model` None means the worker's `LLM_MODEL`."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, min_length=1, max_length=MAX_MODEL_CHARS)
    prompt: str | None = None
    system: str | None = None
    temperature: float = Field(default=0.7, ge=0.0, le=1.0)
    max_tokens: int = Field(default=4096, ge=1, le=128_000)


class ToolNode(BaseModel):
    mode: Literal["tool"] = "tool"
    tool_name: str = Field(min_length=1)
    tool_params: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, le=86_400)


class LlmNode(BaseModel):
    mode: Literal["llm"] = "llm"
    llm_config: LlmConfig
    timeout: float | None = Field(default=None, gt=0, le=86_400)

    @property
    def prompt(self) -> str:
        assert self.llm_config.prompt is not None  # enforced by parse_node_config
        return self.llm_config.prompt


class AgentNode(BaseModel):
    mode: Literal["agent"] = "agent"
    llm_config: LlmConfig
    tools: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    task: str = DEFAULT_TASK
    system: str = DEFAULT_SYSTEM
    max_iterations: int | None = Field(default=None, ge=1, le=10_000)
    require_approval: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _approvals_name_listed_tools(self) -> AgentNode:
        # A misspelt name would otherwise let the tool run with no approval at all.
        unknown = [name for name in self.require_approval if name not in self.tools]
        if unknown:
            raise ValueError(f"require_approval names tools not in tools: {', '.join(unknown)}")
        return self


NodeConfig = Annotated[ToolNode | LlmNode | AgentNode, Field(discriminator="mode")]


def detect_mode(config: dict[str, Any], type_hint: str | None = None) -> Mode:
    """The Go worker's rules, after an explicit `type` (or the orchestrator's `executor_type`)."""
    explicit = config.get("type", type_hint if type_hint in MODES else None)
    if explicit is not None:
        if explicit not in MODES:
            raise ContractError(
                f"node config: unknown type {explicit!r} (expected one of agent, llm, tool)"
            )
        return explicit
    if config.get("tool_name"):
        return "tool"
    llm_config = config.get("llm_config")
    if not isinstance(llm_config, dict):
        return "tool"
    tools = config.get("tools")
    if isinstance(tools, list) and tools:
        return "agent"
    return "llm"


def parse_node_config(raw: Any, type_hint: str | None = None) -> ToolNode | LlmNode | AgentNode:
    """Validate a node config and pick its mode; raise `ContractError` with a readable message."""
    if not isinstance(raw, dict):
        raise ContractError(f"node config: expected a JSON object, got {type(raw).__name__}")
    if nested_deeper_than(raw, MAX_NESTING):
        raise ContractError(f"node config: nested more than {MAX_NESTING} levels deep")
    mode = detect_mode(raw, type_hint)
    fields = dict(raw)
    fields.pop("type", None)
    if mode == "tool":
        if not fields.get("tool_name"):
            hint = "" if "llm_config" in fields else " (config has neither tool_name nor llm_config)"
            raise ContractError(f"node config: tool_name required for tool mode{hint}")
        if "tool_params" not in fields and "parameters" in fields:
            fields["tool_params"] = fields["parameters"]  # the orchestrator's schema name
        if fields.get("tool_params") is None:
            fields["tool_params"] = {}
        if not isinstance(fields["tool_params"], dict):
            raise ContractError("node config: tool_params must be a JSON object")
        model: type[BaseModel] = ToolNode
    elif mode == "llm":
        llm = fields.get("llm_config")
        if not isinstance(llm, dict):
            raise ContractError("node config: llm_config required for llm mode")
        if not llm.get("prompt"):
            raise ContractError("node config: llm_config.prompt required for llm mode")
        model = LlmNode
    else:
        if not isinstance(fields.get("llm_config"), dict):
            raise ContractError("node config: llm_config required for agent mode")
        if not fields.get("tools"):
            raise ContractError("node config: tools required for agent mode (a non-empty list)")
        if fields.get("system") is None:
            fields["system"] = fields["llm_config"].get("system") or DEFAULT_SYSTEM
        model = AgentNode
    fields["mode"] = mode
    try:
        return model.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ContractError(readable(exc, "node config")) from None


# ---------------------------------------------------------------------------------------------
# Work items (CONTRACT 1)


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


def _recover_ids(doc: Any) -> tuple[str | None, str | None]:
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
        raise MalformedEntry(too_deep, *_recover_ids(doc))
    graph_id, node_id = _recover_ids(doc)
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


# ---------------------------------------------------------------------------------------------
# Outcomes and result events (CONTRACT 4)


class NodeOutcome(BaseModel):
    """How a node ended; the emit activity turns it into exactly one result event."""

    graph_id: str
    node_id: str
    workflow_id: str
    run_id: str
    status: Literal["completed", "failed"]
    output: Any = None
    error: str | None = None
    mode: Mode | None = None
    event_id: str
    started_at: datetime
    finished_at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class ResultEvent(BaseModel):
    """`node.completed` / `node.failed`: the Go worker's top-level ids plus the orchestrator's."""

    id: str
    type: Literal["node.completed", "node.failed"]
    timestamp: str
    execution_id: str
    graph_id: str
    node_id: str
    data: dict[str, Any]

    @classmethod
    def from_outcome(cls, outcome: NodeOutcome, failures_as_completed: bool = False) -> ResultEvent:
        data: dict[str, Any] = {"graph_id": outcome.graph_id, "node_id": outcome.node_id}
        if outcome.status == "completed":
            data["output"] = outcome.output
        else:
            data["error"] = outcome.error or "node failed"
        data.update(
            workflow_id=outcome.workflow_id,
            run_id=outcome.run_id,
            mode=outcome.mode,
            duration_ms=int((outcome.finished_at - outcome.started_at).total_seconds() * 1000),
            **outcome.details,
        )
        return cls(
            id=outcome.event_id,
            type="node.completed" if failures_as_completed else f"node.{outcome.status}",  # type: ignore[arg-type]
            timestamp=outcome.finished_at.isoformat().replace("+00:00", "Z"),
            execution_id=outcome.graph_id,
            graph_id=outcome.graph_id,
            node_id=outcome.node_id,
            data=data,
        )

    @classmethod
    def failure(
        cls,
        *,
        graph_id: str,
        node_id: str,
        error: str,
        event_id: str,
        at: datetime,
        failures_as_completed: bool = False,
        **extra: Any,
    ) -> ResultEvent:
        """A failure reported without a workflow (an entry that never became one)."""
        return cls(
            id=event_id,
            type="node.completed" if failures_as_completed else "node.failed",
            timestamp=at.isoformat().replace("+00:00", "Z"),
            execution_id=graph_id,
            graph_id=graph_id,
            node_id=node_id,
            data={"graph_id": graph_id, "node_id": node_id, "error": error, **extra},
        )
