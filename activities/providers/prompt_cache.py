"""Prompt caching for the Messages API: where the cache breakpoints go.

An agent loop re-sends its whole conversation with every model call; the provider can read the
unchanged prefix from its cache (billed at 0.1× the input price) instead of processing it again.
A breakpoint (`cache_control` on a block) marks the end of a prefix to cache; the Messages API
takes at most four per request, and reads a cached prefix only where a breakpoint of the new
request falls on the same prefix. So the breakpoints go on:

1. the last tool definition (the tools are the first part of the prompt, the same every call);
2. the system prompt's last block (tools + system);
3. the last block of the newest message (the whole conversation so far: written now, read by the
   next call);
4. the last block of the message before the previous assistant turn (the prefix the previous
   call wrote: read now).

Placed this way, a loop of N calls reads every earlier turn from the cache and writes only the
new part. A one-call request (an `llm` node) marks only tools and system prompt, the part other
nodes of the same config share: writing its one-off messages to the cache would cost 1.25× their
input price for nothing. The transcript in workflow state is never changed: the blocks are copied on the way
out, so histories look the same with caching on or off (`PROMPT_CACHING`).
"""

from __future__ import annotations

from typing import Any

EPHEMERAL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4


def _marked(block: dict[str, Any]) -> dict[str, Any]:
    return {**block, "cache_control": EPHEMERAL}


def _mark_last_block(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}] if content else []
    if not content:
        return message
    return {**message, "content": [*content[:-1], _marked(content[-1])]}


def with_breakpoints(
    system: str | None, tools: list[dict[str, Any]] | None, messages: list[dict[str, Any]], *, conversation: bool = True
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """`system`, `tools` and `messages` as the request sends them, with cache breakpoints (on the
    messages only when they are a `conversation` that the next call sends again).

    Returns copies; the arguments are left as they were. `system` becomes a list of one text
    block (the form that can carry `cache_control`)."""
    marked_tools = [*tools[:-1], _marked(tools[-1])] if tools else tools
    marked_system = [_marked({"type": "text", "text": system})] if system else None
    marked_messages = list(messages)
    if not conversation:
        return marked_system, marked_tools, marked_messages
    # The newest message, and the one two turns back (what the previous call marked and wrote).
    budget = MAX_BREAKPOINTS - bool(marked_tools) - bool(marked_system)
    for index in (len(messages) - 1, len(messages) - 3)[:budget]:
        if index >= 0:
            marked_messages[index] = _mark_last_block(messages[index])
    return marked_system, marked_tools, marked_messages


def breakpoints(request: dict[str, Any]) -> int:
    """How many `cache_control` markers a Messages request carries (the API's limit is four)."""
    blocks: list[Any] = [*(request.get("tools") or [])]
    system = request.get("system")
    if isinstance(system, list):
        blocks += system
    for message in request.get("messages") or []:
        if isinstance(message.get("content"), list):
            blocks += message["content"]
    return sum(1 for block in blocks if isinstance(block, dict) and "cache_control" in block)
