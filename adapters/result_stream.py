"""Reading result events as they are written: one XREAD loop for `submit`, `tail` and the bench.

A cursor is taken before the reader acts (`at_end`), so an event written between two reads, or
between taking the cursor and submitting, is never missed (`$` would be re-read at every call).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as redis

from adapters.redis_client import as_str


async def at_end(client: redis.Redis, streams: Sequence[str]) -> dict[str, str]:
    """A cursor past the newest entry of each stream."""
    cursor = {}
    for stream in dict.fromkeys(streams):
        newest = await client.xrevrange(stream, count=1)
        cursor[stream] = as_str(newest[0][0]) if newest else "0-0"
    return cursor


def at_start(streams: Sequence[str]) -> dict[str, str]:
    return {stream: "0-0" for stream in dict.fromkeys(streams)}


async def follow(
    client: redis.Redis, cursor: dict[str, str], *, block_ms: int = 1000, count: int | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(stream, event) for every entry after `cursor`, forever; the cursor advances in place."""
    while True:
        for raw_stream, entries in await client.xread(cursor, block=block_ms, count=count) or []:
            for entry_id, fields in entries:
                cursor[as_str(raw_stream)] = as_str(entry_id)
                data = fields.get(b"data", fields.get("data"))
                yield as_str(raw_stream), json.loads(data)
