"""Whether the namespace has the search attributes the workflow sets (core/search_attributes.py).

They must be registered in the namespace (the dev stack does it; for production see
docs/operations.md). The worker and the ingress check at start; when they are missing they log
how to add them, the ingress starts workflows without them and the workflows do not set them,
instead of failing their starts and tasks.
"""

from __future__ import annotations

import logging

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from core.search_attributes import ALL

log = logging.getLogger(__name__)


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
