"""Node config and mode detection (docs/contract.md, section 2): what an executor node asks for.

The Go worker's rules pick the mode (tool, llm, agent) unless the config says `type`; each mode is
a pydantic model, and a bad config raises `ContractError` naming what is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ContractError, readable

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




Provider = Literal["anthropic", "openai", "bedrock", "vertex"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "openai", "bedrock", "vertex")


def qualified_model(provider: str | None, model: str) -> str:
    """`provider:model` when a node names its provider, else the model alone (the worker's default
    provider). The qualified name is what travels to the LLM step (`LlmRequest.model`), so the
    workflow code and recorded histories stay as they are; `split_model` undoes it."""
    return f"{provider}:{model}" if provider else model


def split_model(model: str) -> tuple[Provider | None, str]:
    """(`provider`, `model`) of a possibly qualified model name; (None, model) when it names no
    provider. Only a known provider's name before the first `:` counts, so Ollama's `llama3.1:8b`
    or Bedrock's `anthropic.claude-…-v1:0` stay whole."""
    head, sep, rest = model.partition(":")
    if sep and rest and head in PROVIDERS:
        return head, rest  # type: ignore[return-value]
    return None, model


class LlmConfig(BaseModel):
    """`llm_config` of llm and agent nodes. `model` None means the worker's `LLM_MODEL`.

    `provider` picks one of the providers the operator configured on the worker (`LLM_PROVIDERS`);
    None means the worker's `LLM_PROVIDER`. It is a name, never a URL or a key: a work item cannot
    point the worker anywhere the operator did not."""

    model_config = ConfigDict(extra="ignore")

    provider: Provider | None = None
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
    # Who may decide a call under `require_approval`: `tool_approvers[tool]`, else `approvers`
    # (the worker's `APPROVERS` when the node names none), else anyone who can reach the node.
    approvers: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    tool_approvers: dict[str, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, le=7 * 86_400)
    # Budgets: the loop fails once its model calls used more (NODE_MAX_TOTAL_TOKENS /
    # NODE_MAX_COST_USD when unset). Tokens count input, output, cache reads and cache writes.
    max_total_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _approvals_name_listed_tools(self) -> AgentNode:
        # A misspelt name would otherwise let the tool run with no approval at all.
        unknown = [name for name in self.require_approval if name not in self.tools]
        if unknown:
            raise ValueError(f"require_approval names tools not in tools: {', '.join(unknown)}")
        # Approvers for a tool that needs no approval would guard nothing: likely a misspelling.
        unguarded = [name for name in self.tool_approvers if name not in self.require_approval]
        if unguarded:
            raise ValueError(f"tool_approvers names tools not in require_approval: {', '.join(unguarded)}")
        return self

    def approvers_of(self, tool: str) -> list[str]:
        """Who may decide a call of `tool`; empty: anyone."""
        return self.tool_approvers.get(tool) or self.approvers


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
