"""A small MCP server of ours for the tests, over stdio (default) or streamable HTTP (--http).

Every call is appended to the file named by `MCP_CALL_LOG` (one JSON line per call), so tests
can count executions across processes and restarts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent, TextResourceContents
from pydantic import BaseModel

server = MCPServer("executor-test-tools", version="1.0.0", log_level="WARNING")
TRANSPORT = "stdio"
PNG_1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def record(tool: str, **arguments: object) -> None:
    path = os.environ.get("MCP_CALL_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"tool": tool, "transport": TRANSPORT, "pid": os.getpid(), "at": time.time(), **arguments}) + "\n")


class Weather(BaseModel):
    city: str
    temperature_c: float
    conditions: str


@server.tool()
def get_weather(city: str) -> Weather:
    """Current weather for a city (deterministic test data)."""
    record("get_weather", city=city)
    return Weather(city=city, temperature_c=round(10 + len(city) * 1.5, 1), conditions="sunny")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back, prefixed with the transport."""
    record("echo", text=text)
    return f"{TRANSPORT}: {text}"


@server.tool(structured_output=False)
def json_text(payload: str) -> str:
    """Return the given text verbatim, as text content only (no structured content)."""
    record("json_text")
    return payload


@server.tool()
def fail(message: str) -> CallToolResult:
    """Always answers with an error result (isError) carrying `message`."""
    record("fail", message=message)
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


@server.tool()
def picture(caption: str) -> list:
    """A caption, an image and an embedded resource."""
    record("picture", caption=caption)
    return [
        TextContent(text=caption),
        ImageContent(data=PNG_1x1, mime_type="image/png"),
        EmbeddedResource(resource=TextResourceContents(uri="memo://note", mime_type="text/plain", text="attached note")),
    ]


@server.tool()
async def slow(seconds: float, tag: str = "") -> str:
    """Sleep, then answer (for crash and timeout tests)."""
    record("slow_started", seconds=seconds, tag=tag)
    await anyio.sleep(seconds)
    record("slow", seconds=seconds, tag=tag)
    return f"slept {seconds}"


@server.tool()
async def gate(name: str) -> str:
    """Wait while the file `name` exists in MCP_GATE_DIR (a test holds a call in flight)."""
    record("gate_started", name=name)
    path = os.path.join(os.environ.get("MCP_GATE_DIR", "/tmp"), name)
    deadline = time.monotonic() + 120
    while os.path.exists(path) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    record("gate", name=name)
    return f"gate {name} passed"


@server.tool()
def whoami(ctx: Context) -> str:
    """Which credentials reached the server (recorded as a hash, never in clear)."""
    headers = ctx.headers or {}
    auth = headers.get("authorization", "")
    record("whoami", auth_sha256=hashlib.sha256(auth.encode()).hexdigest() if auth else None, token_sha256=_env_hash("MCP_TOKEN"))
    return "credentials checked"


def _env_hash(name: str) -> str | None:
    value = os.environ.get(name)
    return hashlib.sha256(value.encode()).hexdigest() if value else None


@server.tool(structured_output=False)
def blob(kilobytes: int, tag: str = "") -> str:
    """A large text result (for the claim check)."""
    record("blob", kilobytes=kilobytes, tag=tag)
    line = f"{tag} " + "x" * 60 + "\n"
    return (line * (kilobytes * 1024 // len(line) + 1))[: kilobytes * 1024]


@server.tool()
def die() -> str:
    """Kill this server process (the pool must re-open a session)."""
    record("die")
    os._exit(3)


def main() -> None:
    global TRANSPORT
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stderr-line", default=None, help="write this line to stderr at start (log relay tests)")
    args = parser.parse_args()
    if args.stderr_line is not None:
        print(args.stderr_line, file=sys.stderr, flush=True)
    if args.http:
        TRANSPORT = "http"
        server.run("streamable-http", host="127.0.0.1", port=args.port, streamable_http_path="/mcp")
    else:
        server.run()


if __name__ == "__main__":
    sys.exit(main())
