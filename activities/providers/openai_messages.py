"""Anthropic Messages <-> OpenAI Chat Completions, as pure functions (no client, no I/O).

The workflow keeps ONE transcript format whatever the provider: Anthropic's (content blocks in
`LlmRequest.messages`, `LlmReply.content`). An OpenAI-compatible provider is spoken by translating
each request on the way out and each reply on the way back, inside the activity, so an agent
loop's history is the same, and replays the same, whichever provider answered it.

Request, Anthropic -> OpenAI:
- `system` -> a first `{"role": "system"}` message.
- user text / image blocks -> `content` parts (`text`, `image_url` with a `data:` URL or the URL);
  a user turn of one text block stays a plain string (the widest-supported shape).
- assistant `text` + `tool_use` blocks -> `content` + `tool_calls` (`arguments` is the input as
  JSON text). Blocks OpenAI has no counterpart for (Anthropic's `thinking`) are not sent.
- `tool_result` blocks -> one `{"role": "tool", "tool_call_id"}` message each, in order, first in
  the turn. Chat Completions has no error flag: an `is_error` result's text starts with
  `TOOL_ERROR_PREFIX`, which the model reads and `is_error_text` recognises. Tool messages carry
  text only, so a result's images follow in one user message after the tool messages, labelled
  with the call they came from.
- tool definitions -> `{"type": "function", "function": {name, description, parameters}}`.

Reply, OpenAI -> Anthropic: `content` -> a text block, `tool_calls` -> `tool_use` blocks (input
parsed from `arguments`), `finish_reason` -> `stop_reason` (`FINISH_TO_STOP`), usage -> `Usage`
with Anthropic's meaning (see core/step_io.py).
"""

from __future__ import annotations

import json
from typing import Any

TOOL_ERROR_PREFIX = "[tool error] "

FINISH_TO_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "function_call": "tool_use", "length": "max_tokens", "content_filter": "refusal"}
STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length", "refusal": "content_filter"}


class UnusableReply(ValueError):
    """A reply that cannot become Anthropic blocks (no choice, arguments that are not JSON)."""


def is_error_text(content: str) -> bool:
    return content.startswith(TOOL_ERROR_PREFIX)


# -- requests -----------------------------------------------------------------------------------
def chat_request(
    *, model: str, messages: list[dict[str, Any]], system: str | None, tools: list[dict[str, Any]], temperature: float, max_tokens: int
) -> dict[str, Any]:
    """The Chat Completions arguments for one Messages request."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        out.extend(chat_messages(message))
    request: dict[str, Any] = {"model": model, "messages": out, "temperature": temperature, "max_tokens": max_tokens}
    if tools:
        request["tools"] = [chat_tool(tool) for tool in tools]
    return request


def chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def chat_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One Anthropic message as one or more Chat Completions messages."""
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = [b for b in content or [] if isinstance(b, dict)]
    if role == "assistant":
        return [_assistant(blocks)]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "tool_result":
            text, images = _tool_result(block)
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
            if images:
                parts.append({"type": "text", "text": f"(images returned by tool call {block.get('tool_use_id', '')})"})
                parts.extend(images)
        else:
            part = _part(block)
            if part is not None:
                parts.append(part)
    if not parts:
        return tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    calls = [
        {"id": b.get("id", ""), "type": "function", "function": {"name": b.get("name", ""), "arguments": json.dumps(b.get("input") or {}, ensure_ascii=False)}}
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result(block: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The text of a tool_result (its text blocks joined) and its images as content parts."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for inner in content:
            if isinstance(inner, dict) and inner.get("type") == "image":
                part = _part(inner)
                if part is not None:
                    images.append(part)
            elif isinstance(inner, dict):
                texts.append(str(inner.get("text", "")))
        text = "\n".join(texts)
    else:
        text = "" if content is None else str(content)
    if block.get("is_error"):
        text = TOOL_ERROR_PREFIX + text
    return text, images


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            return {"type": "image_url", "image_url": {"url": f"data:{source.get('media_type')};base64,{source.get('data')}"}}
        if source.get("type") == "url":
            return {"type": "image_url", "image_url": {"url": source.get("url")}}
    return None  # documents and other block kinds have no Chat Completions part


# -- replies ------------------------------------------------------------------------------------
def reply_blocks(completion: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The first choice of a chat completion (as a dict) as Anthropic content blocks and stop reason."""
    choices = completion.get("choices") or []
    if not choices:
        raise UnusableReply("the completion has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    blocks: list[dict[str, Any]] = []
    if message.get("content"):
        blocks.append({"type": "text", "text": message["content"]})
    finish = choice.get("finish_reason")
    calls = message.get("tool_calls") or []
    for call in calls:
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError:
            if finish == "length":
                arguments = {}  # cut mid-call: the loop fails at max_tokens and calls nothing
            else:
                raise UnusableReply(f"tool call {function.get('name')!r} has arguments that are not JSON: {raw[:200]!r}") from None
        if not isinstance(arguments, dict):
            raise UnusableReply(f"tool call {function.get('name')!r} has arguments that are not a JSON object: {raw[:200]!r}")
        blocks.append({"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "", "input": arguments})
    stop = FINISH_TO_STOP.get(finish, finish) if finish else None
    if calls and stop in ("end_turn", None):
        stop = "tool_use"  # some servers (Ollama) say "stop" while asking for tools
    return blocks, stop


def usage_counts(usage: dict[str, Any] | None) -> dict[str, int]:
    """OpenAI usage as Anthropic's counts: cached prompt tokens are taken out of `input_tokens`."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    read = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return {
        "input_tokens": max(int(usage.get("prompt_tokens") or 0) - read - written, 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }
