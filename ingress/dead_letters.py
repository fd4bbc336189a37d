"""Dead letters: the copy of a stream entry the ingress gave up on, with the reason, in a form any
Redis or JSON reader takes (field names made readable, a prefix of each value when the entry was
over the size limit). The ingress's own fields come last: an entry cannot forge them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from adapters.redis_client import as_str
from core.work_item import entry_size

MAX_REASON_CHARS = 1000  # of a dead letter's reason (an exception message can be huge)
TRUNCATED_FIELD_BYTES = 4096  # kept of each field of an oversized entry in its dead letter
MAX_FIELD_NAME_CHARS = 256  # of a field name in a dead letter (names are not counted in the size)


class StreamEntry(Protocol):
    stream: str
    entry_id: str
    fields: dict | None
    deliveries: int


def _printable(value: str, limit: int) -> str:
    """At most `limit` characters any Redis or JSON writer takes: lone surrogates become `\\udxxx`."""
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def bounded_reason(reason: str) -> str:
    return _printable(reason, MAX_REASON_CHARS)


def cause(exc: BaseException) -> str:
    """`Type: message`: the reason of a dead letter for an exception nobody expected."""
    return _printable(f"{type(exc).__name__}: {exc}", MAX_REASON_CHARS)


def dead_letter_record(
    entry: StreamEntry, reason: str, *, consumer: str, at: datetime, max_entry_bytes: int
) -> dict[str, bytes | str]:
    """The dead-letter stream's copy of an entry: its fields (names made readable, values as they
    were, or a prefix of each when the entry was over the size limit), then ours, which the entry
    cannot forge."""
    fields = entry.fields or {}
    oversized = entry_size(fields) > max_entry_bytes
    record: dict[str, bytes | str] = {}
    for name, value in fields.items():
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "backslashreplace")
        readable_name = _printable(as_str(name, errors="backslashreplace"), MAX_FIELD_NAME_CHARS)
        record[readable_name] = raw[:TRUNCATED_FIELD_BYTES] if oversized else raw
    record.update(
        stream=entry.stream,
        entry_id=entry.entry_id,
        reason=_printable(reason, MAX_REASON_CHARS),
        consumer=consumer,
        deliveries=str(entry.deliveries),
        at=at.isoformat(),
    )
    if oversized:
        record["truncated"] = "true"
    return record
