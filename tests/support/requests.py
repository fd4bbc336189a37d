"""Requests as the scripted model received them, read as the workflow built them."""

from __future__ import annotations

from typing import Any


def _plain(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    marked = [block for block in content if isinstance(block, dict) and "cache_control" in block]
    blocks = [{k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block for block in content]
    # prompt caching sends a plain string as one text block carrying the marker
    if marked and len(blocks) == 1 and blocks[0].get("type") == "text" and set(blocks[0]) == {"type", "text"}:
        return blocks[0]["text"]
    return blocks


def unmarked(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API request without prompt caching's markers (activities/providers/
    prompt_cache.py): `cache_control` removed, and the text block it made of a string system
    prompt or message content turned back into the string."""
    plain = dict(body)
    if "system" in plain:
        plain["system"] = _plain(plain["system"])
    if "tools" in plain:
        plain["tools"] = [{k: v for k, v in tool.items() if k != "cache_control"} for tool in plain["tools"]]
    plain["messages"] = [{**m, "content": _plain(m.get("content"))} for m in body.get("messages") or []]
    return plain
