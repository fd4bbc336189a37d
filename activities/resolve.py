"""Resolve: graph state + node config + templates, the first step of every node."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as redis
from temporalio import activity

from core.failures import NODE_CONFIG, fail
from core import keys
from adapters.settings import Settings
from activities.providers.pricing import PriceTable
from core.node_config import MAX_NESTING, AgentNode, LlmNode, ToolNode, nested_deeper_than, parse_node_config, qualified_model, split_model
from core.errors import ContractError
from core.work_item import WorkItem
from core.step_io import ResolvedNode, StepTimeouts
from core.templates import Renderer, Variables

log = logging.getLogger(__name__)


def _node_entry(state: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    """`graph.nodes[node_id]`; the orchestrator stores nodes as a map, some tools as a list."""
    graph = state.get("graph")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if isinstance(nodes, dict):
        node = nodes.get(node_id)
    elif isinstance(nodes, list):
        node = next((n for n in nodes if isinstance(n, dict) and n.get("id") == node_id), None)
    else:
        return None
    return node if isinstance(node, dict) else None


def render(node: ToolNode | LlmNode | AgentNode, renderer: Renderer) -> ToolNode | LlmNode | AgentNode:
    if isinstance(node, ToolNode):
        params = renderer.value(node.tool_params)
        if nested_deeper_than(params, MAX_NESTING):  # a typed `{{name}}` may bring in a deep value
            raise ContractError(f"node config: tool_params nested more than {MAX_NESTING} levels deep once rendered")
        node = node.model_copy(update={"tool_params": params})
    elif isinstance(node, LlmNode):
        llm = node.llm_config.model_copy(update={"prompt": renderer.text(node.prompt)})
        node = node.model_copy(update={"llm_config": llm})
    else:
        node = node.model_copy(update={"task": renderer.text(node.task)})
    renderer.check()
    return node


class ResolveActivities:
    def __init__(self, redis_client: redis.Redis, settings: Settings, search_attributes: bool = False):
        self._redis = redis_client
        self._settings = settings
        self._search_attributes = search_attributes
        self._prices = PriceTable.load(settings.llm_prices_file)

    async def _graph_state(self, graph_id: str, required: bool) -> dict[str, Any]:
        key = keys.graph_state(graph_id)
        raw = await self._redis.get(key)  # a Redis outage raises and is retried
        if raw is None:
            if required:
                raise fail(NODE_CONFIG, f"graph state {key} not found")
            return {}
        try:
            state = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise fail(NODE_CONFIG, f"graph state {key} is not JSON: {exc}") from None
        except RecursionError:  # deeper than the JSON parser goes
            raise fail(NODE_CONFIG, f"graph state {key} is nested too deeply to read") from None
        if not isinstance(state, dict):
            raise fail(NODE_CONFIG, f"graph state {key} is not a JSON object")
        return state

    @activity.defn(name="resolve_node")
    async def resolve_node(self, item: WorkItem) -> ResolvedNode:
        """Find the node's config, validate it and render its templates; fail clearly if not."""
        state = await self._graph_state(item.graph_id, required=item.config is None)
        type_hint = None
        config = item.config
        if config is None:
            entry = _node_entry(state, item.node_id)
            if entry is None:
                raise fail(NODE_CONFIG, f"node {item.node_id!r} not found in graph {item.graph_id!r}")
            config = entry.get("config") if entry.get("config") is not None else {}
            type_hint = entry.get("executor_type")
        inputs = {**(state.get("inputs") or {}), **item.inputs}
        node_states = {**(state.get("node_states") or {}), **item.node_states}
        try:
            node = parse_node_config(config, type_hint)
            renderer = Renderer(Variables(inputs, node_states), self._settings.template_missing, self._settings.max_rendered_bytes)
            node = render(node, renderer)
        except ContractError as exc:
            raise fail(NODE_CONFIG, str(exc)) from None
        model = None
        if isinstance(node, (LlmNode, AgentNode)):
            model = qualified_model(node.llm_config.provider, self._model_for(node.llm_config.provider, node.llm_config.model))
        if isinstance(node, AgentNode) and node.max_iterations is None:
            node = node.model_copy(update={"max_iterations": self._settings.max_iterations})
        if isinstance(node, AgentNode) and node.require_approval and not node.approvers and self._settings.approvers:
            node = node.model_copy(update={"approvers": self._settings.approvers})  # the worker's APPROVERS
        if isinstance(node, AgentNode):
            node = self._with_budgets(node, model or "")
        log.info("resolved node %s/%s as %s", item.graph_id, item.node_id, node.mode)
        return ResolvedNode(node=node, model=model, timeouts=self.timeouts(), search_attributes=self._search_attributes)

    def _with_budgets(self, node: AgentNode, model: str) -> AgentNode:
        """The worker's default budgets where the node sets none (in the history, so a replay and
        every later run of the loop see the same limits). A cost budget needs the model's price:
        without one it could never be enforced, so that is a config error before any call."""
        s = self._settings
        update: dict[str, Any] = {}
        if node.max_total_tokens is None and s.node_max_total_tokens:
            update["max_total_tokens"] = s.node_max_total_tokens
        if node.max_cost_usd is None and s.node_max_cost_usd:
            update["max_cost_usd"] = s.node_max_cost_usd
        node = node.model_copy(update=update) if update else node
        provider, name = split_model(model)
        if node.max_cost_usd is not None and self._prices.price(provider or s.llm_provider, name) is None:
            raise fail(
                NODE_CONFIG,
                f"node config: max_cost_usd {node.max_cost_usd} cannot be enforced: model {name!r} has no price on this worker (LLM_PRICES_FILE)",
            )
        return node

    def _model_for(self, provider: str | None, model: str | None) -> str:
        """The node's model; a provider the operator did not configure, or another provider
        than the default without a model (`LLM_MODEL` is the default provider's), is a config error."""
        s = self._settings
        if provider is not None and provider not in s.enabled_providers():
            raise fail(NODE_CONFIG, f"node config: llm_config.provider {provider!r} is not configured on this worker (LLM_PROVIDERS: {', '.join(s.enabled_providers())})")
        if model is None and provider not in (None, s.llm_provider):
            raise fail(NODE_CONFIG, f"node config: llm_config.model required with llm_config.provider {provider!r} (LLM_MODEL is for {s.llm_provider})")
        return model or s.llm_model

    def timeouts(self) -> StepTimeouts:
        s = self._settings
        return StepTimeouts(
            heartbeat_seconds=s.activity_heartbeat_timeout,
            llm_seconds=s.llm_timeout + 30,
            llm_attempts=s.llm_max_attempts,
            tool_seconds=s.tool_timeout + 30,
            tool_attempts=s.tool_max_attempts,
            continue_as_new_events=s.continue_as_new_events,
            node_seconds=s.node_timeout,
        )
