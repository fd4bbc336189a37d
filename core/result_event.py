"""Outcomes and result events (docs/contract.md, section 4): how a node ended, and the one event
the orchestrator reads from `node.completed` / `node.failed`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.node_config import Mode


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
        return cls.of(
            event_id=outcome.event_id,
            status=outcome.status,
            at=outcome.finished_at,
            graph_id=outcome.graph_id,
            node_id=outcome.node_id,
            data=data,
            failures_as_completed=failures_as_completed,
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
        data = {"graph_id": graph_id, "node_id": node_id, "error": error, **extra}
        return cls.of(
            event_id=event_id, status="failed", at=at, graph_id=graph_id, node_id=node_id, data=data,
            failures_as_completed=failures_as_completed,
        )

    @classmethod
    def of(
        cls,
        *,
        event_id: str,
        status: str,
        at: datetime,
        graph_id: str,
        node_id: str,
        data: dict[str, Any],
        failures_as_completed: bool,
    ) -> ResultEvent:
        """The envelope, built once: the Go worker's top-level ids beside the orchestrator's
        `execution_id`; failures as `node.completed` for orchestrators that read only that stream."""
        return cls(
            id=event_id,
            type="node.completed" if failures_as_completed else f"node.{status}",  # type: ignore[arg-type]
            timestamp=at.isoformat().replace("+00:00", "Z"),
            execution_id=graph_id,
            graph_id=graph_id,
            node_id=node_id,
            data=data,
        )
