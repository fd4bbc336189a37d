"""Inputs and outputs of the workflow's steps (activities): typed, readable in the Temporal UI.

These never carry secrets: the API key, MCP commands, URLs and headers stay on the worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from core.node_config import NodeConfig
from core.work_item import WorkItem


class StepTimeouts(BaseModel):
    """Operator-tunable step limits, read from the worker's settings by the resolve step."""

    heartbeat_seconds: float = 20.0
    llm_seconds: float = 600.0
    llm_attempts: int = 8
    tool_seconds: float = 150.0
    tool_attempts: int = 5
    continue_as_new_events: int = 5000  # also when Temporal suggests it, whichever comes first
    node_seconds: float = 3600.0  # the node deadline when its config sets no `timeout`


class ResolvedNode(BaseModel):
    """A node ready to run: config validated, templates rendered, worker defaults filled in."""

    node: NodeConfig
    model: str | None = None  # llm and agent modes: the model actually used
    timeouts: StepTimeouts = Field(default_factory=StepTimeouts)
    search_attributes: bool = False  # registered in the namespace: the workflow may set them


class Usage(BaseModel):
    """Tokens and estimated cost of one LLM call, or of a whole agent loop (summed with `+`).

    The meaning is Anthropic's whatever the provider: `input_tokens` are the uncached input tokens;
    `cache_read_input_tokens` / `cache_creation_input_tokens` are counted apart (OpenAI's
    `prompt_tokens_details.cached_tokens` / `cache_write_tokens` map to them, and are subtracted
    from its `prompt_tokens`, which includes them). `cost_usd` is the worker's estimate from its
    price table; None when the model has no price there (unknown, so never a misleading 0), and a
    sum with an unknown part is unknown, but an empty part (no tokens: no call yet) adds nothing.

    Serialised compactly: the cache counts only when non-zero, `cost_usd` only when known, so a
    result event carries `{"input_tokens", "output_tokens"}` at least and never a `null` cost.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float | None = None

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in ("cache_creation_input_tokens", "cache_read_input_tokens"):
            if not data.get(name):
                data.pop(name, None)
        if data.get("cost_usd") is None:
            data.pop("cost_usd", None)
        return data

    @property
    def empty(self) -> bool:
        return not (self.input_tokens or self.output_tokens or self.cache_creation_input_tokens or self.cache_read_input_tokens)

    def __add__(self, other: Usage) -> Usage:
        parts = [u.cost_usd for u in (self, other) if not u.empty]
        cost = None if not parts or None in parts else round(sum(p for p in parts if p is not None), 9)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            cost_usd=cost,
        )


class TranscriptRef(BaseModel):
    """A stored transcript (adapters/transcript_store.py): the chain node `key` names holds the
    conversation's first `messages` messages, the assistant turn of the call that stored it last."""

    key: str
    messages: int


TRANSCRIPT_MISSING = "TranscriptMissing"  # call_llm's error when a chain node is gone: the agent resends everything


class LlmRequest(BaseModel):
    """One Messages API call. `tools` are tool definitions in the API's own shape.

    With `transcript`, `messages` are only the ones after it (an agent loop's tool results): the
    activity puts the stored conversation in front. Without it, `messages` are the whole
    conversation (every request before transcripts existed, and the first of each loop)."""

    model: str
    messages: list[dict[str, Any]]
    transcript: TranscriptRef | None = None
    keep_transcript: bool = False  # store the conversation after this call (agent loops) and return its ref
    system: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    temperature: float = 0.7
    max_tokens: int = 4096


class LlmReply(BaseModel):
    """The assistant turn as the API returned it (content blocks kept verbatim)."""

    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    transcript: TranscriptRef | None = None  # the conversation including this turn, stored (None: not stored)

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class ToolCall(BaseModel):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(BaseModel):
    """A tool's answer. `is_error` is the tool's own error result: data, not an exception."""

    tool: str
    server: str
    is_error: bool = False
    output: Any = None

    @property
    def error_message(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return str(self.output)


class ToolSpec(BaseModel):
    """A tool definition as the model sees it (name, description, JSON schema)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    server: str


class EmitReceipt(BaseModel):
    stream: str
    event_id: str
    entry_id: str | None = None  # the stream entry written; None when this was a duplicate
    duplicate: bool = False  # True: an earlier attempt already emitted; nothing new was written




class ToolCallRecord(BaseModel):
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    is_error: bool = False


class ApprovalRecord(BaseModel):
    """A decision as the node keeps it (state, result event, `executor show`): who, when, what."""

    call_id: str
    tool: str
    iteration: int
    approved: bool
    approver: str | None = None
    identity: str | None = None
    reason: str | None = None
    decided_at: datetime


class AgentState(BaseModel):
    """The agent loop's state: transcript, counters, usage. It is all the loop needs to go on in a
    new run after continue-as-new (where it travels as `NodeInput.carry`)."""

    resolved: ResolvedNode
    tool_definitions: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    iteration: int = 0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    started_at: datetime | None = None  # the first run's start, for the event's duration
    runs: int = 1
    approvals: list[ApprovalRecord] = Field(default_factory=list)  # decisions so far, in order
    transcript: TranscriptRef | None = None  # the stored prefix of `messages` (docs/agent.md "Transcripts")


class PendingApproval(BaseModel):
    call_id: str
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)
    iteration: int


class ApprovalDecision(BaseModel):
    """The `decide` update's argument. `by` is the approver the caller names (the CLI's `--by`);
    `identity` is the caller's Temporal client identity, which the Python SDK does not hand to
    update handlers, so the client sends it here (the server also records it in the history's
    update event). Both are claims: nothing but the server's authorizer checks them."""

    call_id: str
    approve: bool
    reason: str | None = None
    by: str | None = None
    identity: str | None = None

    @property
    def approver(self) -> str | None:
        """Who decided: the named approver, else the client's identity."""
        return self.by or self.identity


class NodeInput(BaseModel):
    """NodeWorkflow's one argument: the work item, plus the agent's state after continue-as-new.

    `local_reads` (chosen by the ingress, `LOCAL_STEPS`, on by default): the steps that only read,
    resolve and (agent nodes) describe_tools, run as local activities in the node's first
    workflow task, which saves a round trip through the server each. The emit stays a
    regular activity: its input, the outcome, is then committed to the history before the event
    is written, so a cancellation or a timer arriving meanwhile cannot make the workflow decide
    differently from what the orchestrator was told (a local emit's task is retried with the new
    event when it completes, and decides again). `local_steps` is what releases before 0.2 recorded:
    resolve *and* emit local; their runs keep it. LLM and tool calls are regular activities either
    way. Both are carried in the input, so a replay takes the same branch.

    `attributes_at_start`: the starter set the node's search attributes (the ingress, when the
    namespace has them; a continued run inherits its predecessor's), so the workflow upserts only
    what its resolve step adds. False in histories from before: their runs upsert all of them.
    """

    item: WorkItem
    carry: AgentState | None = None  # the field's name is in recorded histories: keep it
    local_steps: bool = False  # recorded histories: resolve and emit local
    attributes_at_start: bool = False
    local_reads: bool = False
