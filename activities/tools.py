"""The tool step: one call of a built-in tool or of a tool on a configured MCP server.

A node names a tool plainly (`get_weather`: the first server offering it, built-ins first, then
MCP servers in configuration order, those that just failed to connect last) or qualified
(`mcp__<server>__<tool>`). A work item can never name a command or URL: only servers the operator
configured are reachable. A tool's own error result (`isError`) comes back as data; only failures
to call the tool are exceptions. Both activities heartbeat from start to end: finding a tool may
wait on a server's handshake as long as a call may wait on its tool.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jsonschema
from mcp import MCPError
from mcp.types import CallToolResult, TextContent
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import calculate as calc
from core.failures import TOOL_ARGUMENTS, TOOL_UNAVAILABLE, UNKNOWN_TOOL, fail
from activities.heartbeat import heartbeating
from activities.mcp_pool import McpPool, ServerUnavailable
from adapters.metrics import Metrics
from core.step_io import ToolCall, ToolResult, ToolSpec

log = logging.getLogger(__name__)

BUILTIN = "builtin"
QUALIFIED_PREFIX = "mcp__"
CALCULATE = ToolSpec(name=calc.NAME, description=calc.DESCRIPTION, input_schema=calc.INPUT_SCHEMA, server=BUILTIN)

# MCP error codes that mean the request itself is wrong: retrying cannot help.
_BAD_REQUEST_CODES = {-32700, -32600, -32601, -32602}  # parse, invalid request, no method, params


def tool_output(result: CallToolResult) -> Any:
    """Structured content when given; else the text, parsed when it is JSON. Non-text content
    (images, audio, resources) is kept: the output is then `{"content": [...blocks]}` with any
    structured content beside it."""
    texts = [b.text for b in result.content if isinstance(b, TextContent)]
    if any(not isinstance(b, TextContent) for b in result.content):
        out: dict[str, Any] = {"content": [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]}
        if result.structured_content is not None:
            out["structured"] = result.structured_content
        return out
    if result.structured_content is not None:
        return result.structured_content
    text = "\n".join(texts)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


class ToolActivities:
    def __init__(self, pool: McpPool, timeout: float = 120.0, metrics: Metrics | None = None):
        self._pool = pool
        self._timeout = timeout
        self._metrics = metrics or Metrics()

    async def find(self, name: str) -> ToolSpec:
        """Resolve a plain or qualified tool name to a tool on a configured server."""
        if name.startswith(QUALIFIED_PREFIX):
            server, sep, tool = name.removeprefix(QUALIFIED_PREFIX).partition("__")
            if not sep or server not in self._pool.servers:
                raise fail(UNKNOWN_TOOL, f"unknown tool {name!r}: no configured MCP server {server!r}")
            spec = await self._find_on(server, tool)
            if spec is None:
                raise fail(UNKNOWN_TOOL, f"unknown tool {name!r}: server {server!r} has no tool {tool!r}")
            return spec
        if name == calc.NAME:
            return CALCULATE
        unreachable = []
        # A server that just failed to connect would hold every lookup for the connect timeout:
        # it is tried last, so a tool found elsewhere does not wait on it.
        servers = sorted(self._pool.servers, key=self._pool.failed_recently)
        for server in servers:
            try:
                spec = await self._find_on(server, name)
            except ServerUnavailable as exc:
                unreachable.append(str(exc))
                continue
            if spec is not None:
                log.info("tool %s served by MCP server %s", name, server)
                return spec
        if unreachable:  # it may live on a server that is down: worth a retry
            raise fail(TOOL_UNAVAILABLE, f"tool {name!r} not found; unreachable: {'; '.join(unreachable)}")
        servers = ", ".join([BUILTIN, *self._pool.servers])
        raise fail(UNKNOWN_TOOL, f"unknown tool {name!r} (servers searched: {servers})")

    async def _find_on(self, server: str, tool: str) -> ToolSpec | None:
        for t in await self._pool.tools(server):
            if t.name == tool:
                return ToolSpec(name=t.name, description=t.description or "", input_schema=t.input_schema, server=server)
        return None

    @activity.defn(name="describe_tools")
    async def describe_tools(self, names: list[str]) -> list[ToolSpec]:
        """Definitions of the named tools, for the model (agent mode)."""
        try:
            async with heartbeating():
                return [await self.find(name) for name in names]
        except ServerUnavailable as exc:
            raise fail(TOOL_UNAVAILABLE, str(exc)) from None

    @activity.defn(name="call_tool")
    async def call_tool(self, call: ToolCall) -> ToolResult:
        async with heartbeating():
            return await self._find_and_call(call)

    async def _find_and_call(self, call: ToolCall) -> ToolResult:
        began = time.monotonic()
        spec: ToolSpec | None = None
        try:
            try:
                spec = await self.find(call.tool)
            except ServerUnavailable as exc:
                raise fail(TOOL_UNAVAILABLE, str(exc)) from None
            result = await self._call(call, spec)
        except ApplicationError as err:
            # Labels only for tools that exist: work items choose names, metrics must stay bounded.
            self._metrics.tool(spec.name if spec else "unknown", spec.server if spec else "unknown", "error", time.monotonic() - began)
            self._metrics.error("tool", err.type or "unknown")
            raise
        self._metrics.tool(spec.name, spec.server, "error_result" if result.is_error else "ok", time.monotonic() - began)
        return result

    async def _call(self, call: ToolCall, spec: ToolSpec) -> ToolResult:
        try:
            jsonschema.validate(call.arguments, spec.input_schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise fail(TOOL_ARGUMENTS, f"invalid arguments{' at ' + where if where else ''}: {exc.message}") from None
        except jsonschema.SchemaError:
            log.warning("tool %s publishes an invalid input schema; arguments not checked", call.tool)
        if spec.server == BUILTIN:
            try:
                return ToolResult(tool=call.tool, server=BUILTIN, output=calc.calculate(call.arguments["expression"]))
            except calc.CalculationError as exc:
                return ToolResult(tool=call.tool, server=BUILTIN, is_error=True, output=str(exc))
        try:
            result = await self._pool.call(spec.server, spec.name, call.arguments, self._timeout)
        except ServerUnavailable as exc:
            raise fail(TOOL_UNAVAILABLE, str(exc)) from None
        except MCPError as exc:
            if exc.code in _BAD_REQUEST_CODES:
                raise fail(TOOL_ARGUMENTS, f"MCP server {spec.server} refused {spec.name}: {exc.message}") from None
            raise fail(TOOL_UNAVAILABLE, f"MCP server {spec.server}: {exc.message}") from None
        output = tool_output(result)
        if result.is_error:
            texts = [b.text for b in result.content if isinstance(b, TextContent)]
            output = "\n".join(texts) or "tool reported an error"
        log.info("tool %s on %s: %s", spec.name, spec.server, "error result" if result.is_error else "ok")
        return ToolResult(tool=call.tool, server=spec.server, is_error=bool(result.is_error), output=output)
