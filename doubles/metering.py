"""Token metering with a prompt cache, as the scripted model reports usage (`usage=METERED`).

The Messages API bills a request's prompt in three parts: tokens read from the prompt cache,
tokens written to it, and the rest. This reproduces its rules closely enough to measure what
cache breakpoints save (tests, `make bench`):

- the prompt is the tools, then the system prompt, then the messages' content blocks, in order;
- a block's tokens are estimated as its JSON length / 4 (`cache_control` itself not counted);
- a `cache_control` marker ends a cacheable prefix; a prefix is cached per model once a request
  marked it, and a later request reads it when one of its markers ends the very same prefix;
- tokens up to the last cached marker are cache reads, tokens from there to the last marker are
  cache writes, the tokens after the last marker are plain input.

What it leaves out: the provider's minimum cacheable length, its 5-minute lifetime, and its
look-back of a few blocks before a marker. Output tokens: the reply's JSON length / 4.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from typing import Any

METERED = None  # `usage=METERED` on a scripted step: usage computed from the request


def tokens(value: Any) -> int:
    return math.ceil(len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) / 4)


def _blocks(request: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [*(request.get("tools") or [])]
    system = request.get("system")
    if isinstance(system, str) and system:
        blocks.append({"type": "text", "text": system})
    elif isinstance(system, list):
        blocks += system
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        blocks += [{**block, "role": message.get("role")} for block in content or [] if isinstance(block, dict)]
    return blocks


class PromptCache:
    """The prefixes marked so far, per model; safe to share between the server's threads."""

    def __init__(self) -> None:
        self._cached: set[str] = set()
        self._lock = threading.Lock()

    def usage(self, request: dict[str, Any], reply_content: list[dict[str, Any]]) -> dict[str, int]:
        digest = hashlib.sha256(str(request.get("model")).encode())
        counts: list[int] = []
        marks: list[tuple[int, str]] = []  # (index of the block ending the prefix, prefix hash)
        for index, block in enumerate(_blocks(request)):
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            digest.update(json.dumps(plain, sort_keys=True).encode())
            counts.append(tokens(plain))
            if "cache_control" in block:
                marks.append((index, digest.copy().hexdigest()))
        with self._lock:
            read_end = max((index for index, key in marks if key in self._cached), default=-1)
            self._cached.update(key for _, key in marks)
        write_end = marks[-1][0] if marks else -1
        read = sum(counts[: read_end + 1])
        written = sum(counts[read_end + 1 : write_end + 1])
        return {
            "input_tokens": sum(counts[max(read_end, write_end) + 1 :]),
            "output_tokens": tokens(reply_content),
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }
