"""Every Redis key this service reads or writes besides the configured streams."""


def graph_state(graph_id: str) -> str:
    """The orchestrator's graph state (CONTRACT 3), JSON with a 24 h TTL."""
    return f"dago:state:{graph_id}"


def emitted_marker(workflow_id: str) -> str:
    """Set in the same transaction as the result event's XADD: the event exists exactly once."""
    return f"executor:emitted:{workflow_id}"


def claim_checked_payload(sha256: str) -> str:
    """A payload too large for Temporal's history (claim check), by content hash."""
    return f"executor:payload:{sha256}"


def transcript_node(sha256: str) -> str:
    """One link of an agent loop's stored conversation (adapters/transcript_store.py), by content hash."""
    return f"executor:transcript:{sha256}"


def report_lease(workflow_id: str) -> str:
    """Held for seconds by the watchdog reporting a workflow and by `rerun` re-running it, so the
    two never interleave (adapters/result_marker.py)."""
    return f"executor:lease:{workflow_id}"
