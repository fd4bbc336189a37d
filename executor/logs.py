"""Logging: JSON lines for machines, plain text on a terminal; `LOG_LEVEL` honoured.

Every line carries the ids an operator searches by when they are known: `workflow_id`, `run_id`,
`attempt`, `activity`, and `graph_id` / `node_id` (from the workflow id, or given by the caller).
Known secret values are masked in every line as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from temporalio import activity

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_CONTEXT_KEYS = ("workflow_id", "run_id", "attempt", "activity_type", "workflow_type")


class TemporalContext(logging.Filter):
    """Lift Temporal's context (activity info, the SDK's `temporal_*` extras) into plain fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for extra in ("temporal_workflow", "temporal_activity"):
            context = getattr(record, extra, None)
            if isinstance(context, dict):
                for key in _CONTEXT_KEYS:
                    if key in context and not hasattr(record, key):
                        setattr(record, key, context[key])
                delattr(record, extra)
        if activity.in_activity() and not hasattr(record, "workflow_id"):
            info = activity.info()
            record.workflow_id, record.run_id = info.workflow_id, info.workflow_run_id
            record.attempt, record.activity_type = info.attempt, info.activity_type
        workflow_id = getattr(record, "workflow_id", None)
        if isinstance(workflow_id, str) and workflow_id.startswith("node:") and not hasattr(record, "graph_id"):
            parts = workflow_id.split(":", 3)
            if len(parts) == 4:
                record.graph_id, record.node_id = parts[1], parts[2]
        return True


class Redactor(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{k}={getattr(record, k)}" for k in ("graph_id", "node_id", "attempt") if hasattr(record, k)]
        return f"{text} [{' '.join(ids)}]" if ids else text


def setup(level: str, service: str, json_lines: bool | None = None, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter(f"%(asctime)s %(levelname)-5s {service} %(name)s: %(message)s"))
    handler.addFilter(TemporalContext())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for noisy in ("httpx", "httpx2", "httpcore", "mcp", "anthropic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
