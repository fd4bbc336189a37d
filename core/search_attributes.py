"""Search attributes the workflow sets, so one Temporal UI filter lists a graph's nodes
(`DagoGraphId = "g-1"`) or every failed agent node (`DagoMode = "agent" AND DagoOutcome = "failed"`).
Their names live here; whether a namespace has them registered is asked in
adapters/search_attributes.py.

What the starter knows is set *at start* (`at_start`: the ingress, `executor rerun`): the graph and
node always, the mode and model when the envelope carries the config. The workflow then upserts
only what resolving the node changed or added (`still_to_set`): as a rule nothing, so a node's
history has one upsert, its outcome. An upsert is a command, so it costs an event and a
visibility write in the server; a start attribute costs neither.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

from core.errors import ContractError
from core.node_config import PROVIDERS, detect_mode, qualified_model

GRAPH_ID = SearchAttributeKey.for_keyword("DagoGraphId")
NODE_ID = SearchAttributeKey.for_keyword("DagoNodeId")
MODE = SearchAttributeKey.for_keyword("DagoMode")
MODEL = SearchAttributeKey.for_keyword("DagoModel")
OUTCOME = SearchAttributeKey.for_keyword("DagoOutcome")
ALL = (GRAPH_ID, NODE_ID, MODE, MODEL, OUTCOME)


def labels(config: dict[str, Any] | None, default_model: str) -> tuple[str | None, str | None]:
    """(mode, model) as far as an unvalidated config tells them, before the resolve step; None
    where it does not (no config in the envelope, an unreadable one, a tool node's model). The
    model is `default_model` when the config names none and no other provider."""
    if config is None:
        return None, None
    try:
        mode = detect_mode(config)
    except ContractError:
        return None, None
    if mode == "tool":
        return mode, None
    llm_config = config.get("llm_config")
    llm_config = llm_config if isinstance(llm_config, dict) else {}
    model, provider = llm_config.get("model"), llm_config.get("provider")
    if provider is not None and provider not in PROVIDERS:
        return mode, None
    if not isinstance(model, str) or not model:  # none (or none readable): the provider's default
        return mode, (default_model if provider is None else None)
    return mode, qualified_model(provider, model)


# The server refuses an attribute value over 2 KiB (`limit.searchAttributesSizeOfValue`): a start
# or an upsert carrying one would fail. A value this long is left out (ids and model names that
# long are not worth a filter); the node runs and reports as usual.
MAX_VALUE_BYTES = 1024


def _wanted(graph_id: str, node_id: str, mode: str | None, model: str | None) -> list[tuple[SearchAttributeKey[str], str]]:
    pairs = [(GRAPH_ID, graph_id), (NODE_ID, node_id), (MODE, mode), (MODEL, model)]
    return [(key, value) for key, value in pairs if value and len(value.encode("utf-8", "replace")) <= MAX_VALUE_BYTES]


def at_start(graph_id: str, node_id: str, mode: str | None = None, model: str | None = None) -> TypedSearchAttributes:
    """The attributes a starter sets on a node's workflow (bounded like every value here, so a
    start is never refused for them)."""
    return TypedSearchAttributes([SearchAttributePair(key, value) for key, value in _wanted(graph_id, node_id, mode, model)])


def still_to_set(
    have: TypedSearchAttributes, graph_id: str, node_id: str, mode: str | None, model: str | None
) -> list[SearchAttributeUpdate]:
    """The upserts that make `have` (the run's attributes so far) say what the resolved node is:
    none when the starter set them all; all of them for a run started without (a history from
    before start attributes, or a starter that does not set them), in the order they always had."""
    return [key.value_set(value) for key, value in _wanted(graph_id, node_id, mode, model) if have.get(key) != value]
