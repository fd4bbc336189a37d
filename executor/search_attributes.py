"""Search attributes the workflow sets, so one Temporal UI filter lists a graph's nodes
(`DagoGraphId = "g-1"`) or every failed agent node (`DagoMode = "agent" AND DagoOutcome = "failed"`).

They must be registered in the namespace (the dev stack does it; for production see
docs/operations.md). A worker checks at start; when they are missing it logs how to add them and
the workflows simply do not set them, instead of failing their tasks.
"""

from __future__ import annotations

import logging

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

log = logging.getLogger(__name__)

GRAPH_ID = SearchAttributeKey.for_keyword("DagoGraphId")
NODE_ID = SearchAttributeKey.for_keyword("DagoNodeId")
MODE = SearchAttributeKey.for_keyword("DagoMode")
MODEL = SearchAttributeKey.for_keyword("DagoModel")
OUTCOME = SearchAttributeKey.for_keyword("DagoOutcome")
ALL = (GRAPH_ID, NODE_ID, MODE, MODEL, OUTCOME)


async def registered(client: Client, namespace: str) -> bool:
    """True when every attribute exists in the namespace; logs the fix otherwise."""
    try:
        reply = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except Exception as exc:  # noqa: BLE001 - some hosted namespaces refuse this call: skip the feature
        log.warning("cannot list search attributes (%s); workflows will not set them", exc)
        return False
    known = set(reply.custom_attributes)
    missing = [k.name for k in ALL if k.name not in known]
    if missing:
        flags = " ".join(f"--name {name} --type Keyword" for name in missing)
        log.warning(
            "search attributes %s are not registered in namespace %s; workflows will not set them. "
            "Register them with: temporal operator search-attribute create --namespace %s %s",
            ", ".join(missing), namespace, namespace, flags,
        )
    return not missing
