"""Pure logic: MCP tool outputs become the Messages API content of a tool_result block (the agent
loop's end-to-end proof is test_agent.py::test_mcp_images_and_resources_reach_the_model_as_content_blocks)."""

from __future__ import annotations

import base64
import json

from workflows.tool_content import tool_result_content

PNG = base64.b64encode(b"\x89PNG fake bytes").decode()
MEGABYTE = base64.b64encode(b"\0" * 1_000_000).decode()


def test_text_and_json_outputs_stay_text() -> None:
    assert tool_result_content("plain") == "plain"
    assert tool_result_content(42) == "42"
    assert tool_result_content({"city": "Oslo", "temperature_c": 3.5}) == '{"city": "Oslo", "temperature_c": 3.5}'
    # a dict that merely has a "content" key is data, not MCP blocks
    assert tool_result_content({"content": "a string", "n": 1}) == '{"content": "a string", "n": 1}'
    assert tool_result_content({"content": [{"type": "hologram"}]}) == '{"content": [{"type": "hologram"}]}'


def test_text_image_and_text_resource() -> None:
    output = {"content": [
        {"type": "text", "text": "a caption"},
        {"type": "image", "data": PNG, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "memo://note", "mimeType": "text/plain", "text": "a note"}},
    ]}
    assert tool_result_content(output) == [
        {"type": "text", "text": "a caption"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "a note"},
    ]


def test_a_blob_resource_that_is_an_image_becomes_an_image() -> None:
    output = {"content": [{"type": "resource", "resource": {"uri": "file:///cat.webp", "mimeType": "image/webp", "blob": PNG}}]}
    assert tool_result_content(output) == [{"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": PNG}}]


def test_what_the_model_cannot_read_is_named_never_inlined() -> None:
    output = {"content": [
        {"type": "resource", "resource": {"uri": "file:///data.bin", "mimeType": "application/octet-stream", "blob": MEGABYTE}},
        {"type": "resource", "resource": {"uri": "file:///untyped", "blob": MEGABYTE}},
        {"type": "image", "data": MEGABYTE, "mimeType": "image/svg+xml"},
        {"type": "audio", "data": MEGABYTE, "mimeType": "audio/wav"},
        {"type": "resource_link", "uri": "file:///report.pdf", "name": "report", "mimeType": "application/pdf"},
    ]}
    blocks = tool_result_content(output)
    assert [b["type"] for b in blocks] == ["text"] * 5
    texts = [b["text"] for b in blocks]
    assert all(len(t) < 200 for t in texts)
    assert texts[0] == "[resource file:///data.bin (application/octet-stream, 1000000 bytes): binary content, not shown to the model]"
    assert "file:///untyped (no media type" in texts[1]
    assert texts[2].startswith("[image (image/svg+xml, 1000000 bytes)")
    assert texts[3].startswith("[audio (audio/wav, 1000000 bytes)")
    assert texts[4] == "[resource link file:///report.pdf: report (application/pdf)]"


def test_structured_content_is_kept_when_no_text_carries_it() -> None:
    image = {"type": "image", "data": PNG, "mimeType": "image/png"}
    alone = tool_result_content({"content": [image], "structured": {"width": 1}})
    assert alone[-1] == {"type": "text", "text": json.dumps({"width": 1})}
    with_text = tool_result_content({"content": [{"type": "text", "text": '{"width": 1}'}, image], "structured": {"width": 1}})
    assert [b["type"] for b in with_text] == ["text", "image"]  # MCP servers mirror it in a text block


def test_empty_text_blocks_are_dropped() -> None:
    """The Messages API refuses empty text blocks."""
    output = {"content": [{"type": "text", "text": ""}, {"type": "image", "data": PNG, "mimeType": "image/png"}]}
    assert [b["type"] for b in tool_result_content(output)] == ["image"]
