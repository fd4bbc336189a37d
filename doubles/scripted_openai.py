"""The OpenAI Chat Completions face of the scripted LLM (doubles/scripted_llm.py).

The same scripts (Messages-format steps) are served on `/v1/chat/completions`: a request is read
back into Messages format for the script's responders and the offline model, and each scripted
reply or error is written in Chat Completions' shapes, so the real `openai` client parses what a
real OpenAI-compatible server would send. Written apart from the worker's own translation
(activities/providers/openai_messages.py) on purpose: a mistake made once in both would hide.
"""

from __future__ import annotations

import json
from typing import Any

STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length", "refusal": "content_filter"}
ERROR_PREFIX = "[tool error] "  # how the worker marks an is_error tool result (Chat Completions has no flag)


def messages_body(chat: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions request as the Messages request it stands for."""
    system = None
    messages: list[dict[str, Any]] = []
    for message in chat.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        if role == "system":
            system = content
        elif role == "tool":
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text.removeprefix(ERROR_PREFIX)}
            if text.startswith(ERROR_PREFIX):
                block["is_error"] = True
            _append(messages, "user", block)
        elif role == "assistant":
            blocks = [{"type": "text", "text": content}] if content else []
            for call in message.get("tool_calls") or []:
                blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": json.loads(call["function"]["arguments"] or "{}")})
            messages.append({"role": "assistant", "content": blocks})
        elif isinstance(content, str):
            _append(messages, "user", {"type": "text", "text": content})
        else:
            for part in content or []:
                if part.get("type") == "text":
                    _append(messages, "user", {"type": "text", "text": part.get("text", "")})
                elif part.get("type") == "image_url":
                    _append(messages, "user", {"type": "image", "source": {"type": "url", "url": part["image_url"]["url"]}})
    tools = [
        {"name": t["function"]["name"], "description": t["function"].get("description", ""), "input_schema": t["function"].get("parameters") or {}}
        for t in chat.get("tools") or []
    ]
    body: dict[str, Any] = {"model": chat.get("model"), "messages": messages, "max_tokens": chat.get("max_tokens")}
    if system is not None:
        body["system"] = system
    if tools:
        body["tools"] = tools
    return body


def _append(messages: list[dict[str, Any]], role: str, block: dict[str, Any]) -> None:
    """Consecutive user parts (tool messages, then text) make one Messages user turn."""
    if messages and messages[-1]["role"] == role and isinstance(messages[-1]["content"], list):
        messages[-1]["content"].append(block)
    else:
        messages.append({"role": role, "content": [block]})
    if len(messages) == 1 and role == "user" and len(messages[0]["content"]) == 1 and block["type"] == "text":
        messages[0] = {"role": "user", "content": block["text"]}  # a plain first prompt, as the worker sends it


def chat_completion(message: dict[str, Any]) -> dict[str, Any]:
    """A Messages reply (as the scripted server builds it) as a chat completion."""
    texts = [b["text"] for b in message["content"] if b.get("type") == "text"]
    calls = [
        {"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}}
        for b in message["content"]
        if b.get("type") == "tool_use"
    ]
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        reply["tool_calls"] = calls
    usage = message["usage"]
    read, written = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
    return {
        "id": "chatcmpl-" + message["id"],
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": message["model"],
        "choices": [{"index": 0, "message": reply, "finish_reason": STOP_TO_FINISH.get(message["stop_reason"], message["stop_reason"]), "logprobs": None}],
        "usage": {
            "prompt_tokens": usage["input_tokens"] + read + written,
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + read + written + usage["output_tokens"],
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
        },
    }


def chat_error(body: Any) -> Any:
    """A Messages error body in OpenAI's shape (`{"error": {"message", "type", "code"}}`)."""
    if isinstance(body, dict) and body.get("type") == "error":
        error = body["error"]
        return {"error": {"message": error["message"], "type": error["type"], "code": None, "param": None}}
    return body
