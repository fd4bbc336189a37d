"""MCP sessions pooled per worker process, one long-lived session per configured server.

Each session is owned by a dedicated task (the MCP client's cancel scopes must be entered and
exited in one task); activities in any task call through it concurrently. A session that fails
(server crashed, transport broken, request timed out) is retired, and the next call opens a new
one, re-spawning a stdio server. Unlike `temporalio-mcp`, which keeps a connection only for
servers speaking the 2026 protocol, this pool keeps sessions to published servers of every
protocol version: a stdio server is not re-spawned per call.

A server that never answers must not hold anyone for long: the handshake and `tools/list` each
get `MCP_CONNECT_TIMEOUT`, after which the session is retired (a stdio server is stopped) and the
caller fails retryably, naming the server. The pool remembers such failures for a while so that
plain-name lookups try that server last instead of waiting on it again at every call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from typing import Any

import anyio
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult, Tool

from adapters.mcp_config import McpServer
from activities.mcp_stderr import StdioTransport

log = logging.getLogger(__name__)


class ServerUnavailable(Exception):
    """The server could not be reached or its session broke; retrying may succeed."""


# A session's teardown after a failed handshake is bounded by the SDK (stdio: close stdin, then
# SIGTERM, then SIGKILL, 2 s apart); callers stop waiting for it after this much longer.
TEARDOWN_SECONDS = 10.0


class _Session:
    """One server's session, entered and exited inside its owner task."""

    def __init__(self, server: McpServer, connect_timeout: float):
        self.server = server
        self.connect_timeout = connect_timeout
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        # A fresh context: the session belongs to the pool, not to the activity that opened it
        # (its log lines, the server's stderr included, must not carry that activity's ids).
        self._task = asyncio.create_task(self._own(), name=f"mcp-session-{server.name}", context=contextvars.Context())
        self.tools: list[Tool] | None = None

    def _transport(self) -> Any:
        s = self.server
        if s.transport == "stdio":
            params = StdioServerParameters(command=s.command or "", args=s.args, env=s.env or None, cwd=s.cwd)
            return StdioTransport(params, s.name)
        http = create_mcp_http_client(headers=s.headers or None)
        return _HttpTransport(s.url or "", http)

    async def _own(self) -> None:
        try:
            # The deadline covers the handshake only; it is lifted once the session is up.
            with anyio.move_on_after(self.connect_timeout) as handshake:
                async with Client(self._transport()) as client:
                    handshake.deadline = math.inf
                    self._ready.set_result(client)
                    await self._stop.wait()
            if not self._ready.done():
                self._ready.set_exception(ServerUnavailable(
                    f"MCP server {self.server.name}: no answer to the handshake within {self.connect_timeout:g}s"
                ))
        except BaseException as exc:  # noqa: BLE001 - the owner task must never leak an error
            if not self._ready.done():
                self._ready.set_exception(ServerUnavailable(f"cannot connect to MCP server {self.server.name}: {_reason(exc)}"))
            else:
                log.warning("MCP server %s session ended: %s", self.server.name, _reason(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def client(self) -> Client:
        """The connected client, or `ServerUnavailable` once the handshake failed or timed out."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), self.connect_timeout + TEARDOWN_SECONDS)
        except TimeoutError:  # the owner task is stuck in a teardown: give up on it
            raise ServerUnavailable(
                f"MCP server {self.server.name}: no answer to the handshake within {self.connect_timeout:g}s"
            ) from None

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def close(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, 10)
        except Exception:  # noqa: BLE001 - closing is best effort (TimeoutError included)
            self._task.cancel()


class _HttpTransport:
    """streamable HTTP with operator-set headers; the httpx client is closed with the session."""

    def __init__(self, url: str, http: Any):
        self._url, self._http = url, http
        self._inner: Any = None

    async def __aenter__(self) -> Any:
        await self._http.__aenter__()
        self._inner = streamable_http_client(self._url, http_client=self._http)
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._inner.__aexit__(*exc)
        finally:
            await self._http.__aexit__(None, None, None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


CONNECTION_CLOSED = -32000  # the server is gone: the session is retired
PING_TIMEOUT = 5.0
FAILURE_MEMORY_SECONDS = 60.0  # how long plain-name lookups try a server that failed to connect last


class McpPool:
    def __init__(self, servers: list[McpServer], read_timeout: float = 120.0, connect_timeout: float = 30.0):
        self.servers = {s.name: s for s in servers}
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._sessions: dict[str, _Session] = {}
        self._failed_at: dict[str, float] = {}  # server -> when its last connect or discovery failed
        self._lock = asyncio.Lock()

    def failed_recently(self, name: str) -> bool:
        """Its last handshake or `tools/list` failed (and none succeeded since), not long ago."""
        failed_at = self._failed_at.get(name)
        return failed_at is not None and time.monotonic() - failed_at < FAILURE_MEMORY_SECONDS

    async def _session(self, name: str) -> tuple[_Session, Client]:
        async with self._lock:
            session = self._sessions.get(name)
            if session is None or not session.alive:
                session = _Session(self.servers[name], self._connect_timeout)
                self._sessions[name] = session
        try:
            return session, await session.client()
        except ServerUnavailable as exc:
            log.warning("%s", exc)
            self._failed_at[name] = time.monotonic()
            await self._retire(name, session)
            raise

    async def _retire(self, name: str, session: _Session) -> None:
        async with self._lock:
            if self._sessions.get(name) is session:
                del self._sessions[name]
        await session.close()

    async def tools(self, name: str) -> list[Tool]:
        """The server's tools, from `tools/list` (every page), cached per session."""
        session, client = await self._session(name)
        if session.tools is None:
            try:
                found: list[Tool] = []
                cursor = None
                async with asyncio.timeout(self._connect_timeout):  # every page together
                    while True:
                        page = await client.list_tools(cursor=cursor)
                        found.extend(page.tools)
                        cursor = page.next_cursor
                        if not cursor:
                            break
            except Exception as exc:  # noqa: BLE001 - any failure here (MCPError included) breaks the session
                self._failed_at[name] = time.monotonic()
                await self._retire(name, session)
                if isinstance(exc, TimeoutError):
                    failure = ServerUnavailable(f"MCP server {name}: no answer to tools/list within {self._connect_timeout:g}s")
                else:
                    failure = ServerUnavailable(f"MCP server {name}: tools/list failed: {_reason(exc)}")
                log.warning("%s", failure)
                raise failure from None
            session.tools = found
            self._failed_at.pop(name, None)
            log.info("MCP server %s offers %d tools", name, len(found))
        return session.tools

    async def call(self, name: str, tool: str, arguments: dict[str, Any], timeout: float) -> CallToolResult:
        session, client = await self._session(name)
        try:
            # Our own timeout, not the SDK's read timeout: on streamable HTTP that one tears the
            # whole session down, failing every other call in flight on it.
            return await asyncio.wait_for(client.call_tool(tool, arguments), timeout)
        except TimeoutError:
            # One slow call must not fail the others; a server that answers nothing at all is
            # stuck, though, and is restarted.
            if not await self._answers_ping(client):
                await self._retire(name, session)
            raise ServerUnavailable(f"MCP server {name}: {tool} timed out after {timeout:g}s") from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                await self._retire(name, session)
                raise ServerUnavailable(f"MCP server {name}: {exc.message}") from None
            raise
        except Exception as exc:  # noqa: BLE001 - transport failures surface as assorted types
            await self._retire(name, session)
            raise ServerUnavailable(f"MCP server {name}: {_reason(exc)}") from None

    @staticmethod
    async def _answers_ping(client: Client) -> bool:
        """Alive if it answers a ping at all; an error reply (some servers have no `ping`) counts."""
        try:
            await asyncio.wait_for(client.send_ping(), PING_TIMEOUT)
        except MCPError:
            return True
        except Exception:  # noqa: BLE001 - no answer, or a broken transport: the session is unusable
            return False
        return True

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

