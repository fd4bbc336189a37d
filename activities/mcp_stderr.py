"""A stdio MCP server's stderr, line by line, into our logging.

The SDK's `stdio_client` hands the server our own stderr by default: the server's lines then
bypass logging altogether, so they are neither JSON nor redacted, and an env secret the server
echoes would land in the logs in clear. Here the server writes into a pipe instead, and each line
becomes an INFO record of the logger `mcp_server.<name>` with the field `mcp_server`, formatted and
redacted like every other record (and filtered by `LOG_LEVEL`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import anyio
from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client

MAX_LINE_BYTES = 16 * 1024  # a longer "line" is logged in pieces
DRAIN_SECONDS = 2.0  # after the server stopped, for its last lines (a crash's traceback)


class StdioTransport:
    """`stdio_client` whose server writes its stderr into a pipe we read and log."""

    def __init__(self, params: StdioServerParameters, server: str):
        self._params, self._server = params, server
        self._inner: Any = None
        self._relay: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Any:
        read_fd, write_fd = os.pipe()
        self._relay = asyncio.create_task(relay_lines(read_fd, self._server), name=f"mcp-stderr-{self._server}")
        errlog = os.fdopen(write_fd, "w")
        try:
            self._inner = stdio_client(self._params, errlog=errlog)
            streams = await self._inner.__aenter__()
        except BaseException:  # not started (or cancelled while starting): nothing to relay
            errlog.close()
            await self._finish_relay()
            raise
        # The server has its own copy of the write end: once it exits (with any children of
        # its own), the relay reads to the end of the pipe and stops by itself.
        errlog.close()
        return streams

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._inner.__aexit__(*exc)
        finally:
            await self._finish_relay()

    async def _finish_relay(self) -> None:
        relay = self._relay
        if relay is None:
            return
        # Shielded: the session may be closing because its scope was cancelled (a timeout).
        with anyio.CancelScope(shield=True):
            await asyncio.wait({relay}, timeout=DRAIN_SECONDS)
            if not relay.done():  # a child of the server still holds the pipe
                relay.cancel()
                await asyncio.wait({relay})


async def relay_lines(read_fd: int, server: str) -> None:
    """Log each line read from `read_fd` until the end of the pipe; the pipe is closed after."""
    logger = logging.getLogger(f"mcp_server.{server}")
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    reader = asyncio.StreamReader()
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    try:
        pending = b""
        while chunk := await reader.read(MAX_LINE_BYTES):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _log_line(logger, server, line)
            while len(pending) >= MAX_LINE_BYTES:
                _log_line(logger, server, pending[:MAX_LINE_BYTES])
                pending = pending[MAX_LINE_BYTES:]
        _log_line(logger, server, pending)
    finally:
        transport.close()


def _log_line(logger: logging.Logger, server: str, line: bytes) -> None:
    text = line.decode(errors="replace").rstrip()
    if text:
        logger.info("%s", text, extra={"mcp_server": server})
