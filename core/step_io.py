"""Inputs and outputs of the workflow's steps (activities): typed, readable in the Temporal UI.

These never carry secrets: the API key, MCP commands, URLs and headers stay on the worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

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
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class LlmRequest(BaseModel):
    """One Messages API call. `tools` are tool definitions in the API's own shape."""

    model: str
    messages: list[dict[str, Any]]
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


class PendingApproval(BaseModel):
    call_id: str
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)
    iteration: int


class ApprovalDecision(BaseModel):
    call_id: str
    approve: bool
    reason: str | None = None
    by: str | None = None


class NodeInput(BaseModel):
    """NodeWorkflow's one argument: the work item, plus the agent's state after continue-as-new.

    `local_steps` (chosen by the ingress, `LOCAL_STEPS`): resolve and emit run as local activities,
    which saves two round trips through the server per node; LLM and tool calls stay regular
    activities either way. Carried in the input, so a replay takes the same branch.
    """

    item: WorkItem
    carry: AgentState | None = None  # the field's name is in recorded histories: keep it
    local_steps: bool = False
