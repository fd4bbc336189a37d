"""What a `tool_result` block carries back to the model: text, or Anthropic content blocks.

A tool's output is kept as the tool gave it (`activities/tools.py`): plain text, JSON, or, when an
MCP tool answered with images, audio or resources, `{"content": [<MCP blocks>], "structured"?}`.
Serialising that last shape as JSON would hand the model megabytes of base64 it cannot see as
an image. The Messages API takes a list of text and image blocks in a `tool_result`, so MCP blocks
are translated here:

- text → text; image → image (base64 source) when the API reads its media type;
- an embedded resource with text → text; with a blob whose mimeType is such an image → image;
- anything else (audio, other blobs, images of other types, resource links) → one short text
  naming it, never its bytes.

This runs in workflow code (the agent loop), not in the tool activity: the tool's output stays
the same everywhere else (a tool node's result event, metrics, the claim check), and only the
message to the model changes shape. It is a pure function of the recorded output, so it is
deterministic and a replay rebuilds the same request.
"""

from __future__ import annotations

import json
from typing import Any

# Image media types the Messages API accepts in an image block.
MODEL_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MCP_BLOCK_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})


def tool_result_content(output: Any) -> str | list[dict[str, Any]]:
    """The `content` of a tool_result block for this tool output."""
    blocks = mcp_blocks(output)
    if blocks is None:
        return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    converted = [model_block(block) for block in blocks]
    content = [b for b in converted if b["type"] != "text" or b["text"]]  # the API refuses empty text blocks
    structured = output.get("structured")
    if structured is not None and not any(b["type"] == "text" for b in content):
        content.append({"type": "text", "text": json.dumps(structured, ensure_ascii=False)})
    return content or ""


def mcp_blocks(output: Any) -> list[dict[str, Any]] | None:
    """The MCP content blocks of a tool output of the `{"content": [...]}` shape, else None."""
    if not isinstance(output, dict) or set(output) - {"content", "structured"}:
        return None
    blocks = output.get("content")
    if not isinstance(blocks, list) or not blocks:
        return None
    if not all(isinstance(b, dict) and b.get("type") in MCP_BLOCK_TYPES for b in blocks):
        return None
    return blocks


def model_block(block: dict[str, Any]) -> dict[str, Any]:
    """One MCP content block as one Messages API content block (text or image)."""
    kind = block["type"]
    if kind == "text":
        return _text(str(block.get("text") or ""))
    if kind == "image":
        return _image(block.get("data"), block.get("mimeType")) or _text(_named("image", block.get("mimeType"), block.get("data")))
    if kind == "resource":
        resource = block.get("resource") if isinstance(block.get("resource"), dict) else {}
        uri, mime = resource.get("uri", "?"), resource.get("mimeType")
        if isinstance(resource.get("text"), str):
            return _text(resource["text"])
        return _image(resource.get("blob"), mime) or _text(_named(f"resource {uri}", mime, resource.get("blob")))
    if kind == "resource_link":
        mime = block.get("mimeType")
        return _text(f"[resource link {block.get('uri', '?')}: {block.get('name', '')}{f' ({mime})' if mime else ''}]")
    return _text(_named(kind, block.get("mimeType"), block.get("data")))  # audio


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(data: Any, mime: Any) -> dict[str, Any] | None:
    if not isinstance(data, str) or not data or mime not in MODEL_IMAGE_TYPES:
        return None
    return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}


def _named(what: str, mime: Any, data: Any) -> str:
    """A short stand-in for content the model cannot read: what it is and how big, not its bytes."""
    size = f", {len(data) * 3 // 4 - (len(data) - len(data.rstrip('=')))} bytes" if isinstance(data, str) else ""  # base64
    return f"[{what} ({mime or 'no media type'}{size}): binary content, not shown to the model]"
