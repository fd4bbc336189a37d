"""Logging: JSON lines for machines, plain text on a terminal; `LOG_LEVEL` honoured.

Every line carries the ids an operator searches by when they are known: `workflow_id`, `run_id`,
`attempt`, `activity`, and `graph_id` / `node_id` (from the workflow id, or given by the caller).
Known secret values are masked in every line as a last line of defence: in the finished line, so
in the message, tracebacks, stacks and extra fields alike, whichever the format.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from temporalio import activity

from core.work_item import unescape_id

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
            parts = workflow_id.split(":", 3)  # ids are %-escaped inside it (WorkItem.workflow_id)
            if len(parts) == 4:
                record.graph_id, record.node_id = unescape_id(parts[1]), unescape_id(parts[2])
        return True


class Redactor:
    """Masks known secrets in a finished line: as written, and as `repr()` and JSON escape them
    (a secret in a string shown by a traceback, a secret inside a JSON string). Values shorter
    than 4 characters are left alone: masking them would garble every line."""

    def __init__(self, secrets: Iterable[str]):
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                for form in (secret, repr(secret)[1:-1]):
                    forms |= {form, json.dumps(form, ensure_ascii=False)[1:-1], json.dumps(form)[1:-1]}
        self._forms = sorted(forms, key=len, reverse=True)  # longest first: no half-masked secret

    def __call__(self, line: str) -> str:
        for form in self._forms:
            line = line.replace(form, "***")
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor | None = None):
        super().__init__()
        self._redact = redact or Redactor(())

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
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return self._redact(json.dumps(line, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor | None = None):
        super().__init__(fmt)
        self._redact = redact or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{k}={getattr(record, k)}" for k in ("graph_id", "node_id", "attempt") if hasattr(record, k)]
        return self._redact(f"{text} [{' '.join(ids)}]" if ids else text)


def setup(level: str, service: str, json_lines: bool | None = None, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    redact = Redactor(secrets)
    text_format = f"%(asctime)s %(levelname)-5s {service} %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter(redact) if json_lines else TextFormatter(text_format, redact))
    handler.addFilter(TemporalContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for noisy in ("httpx", "httpx2", "httpcore", "mcp", "anthropic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
