"""`/health` (the process is alive), `/ready` (its dependencies answer) and `/metrics` (the
Prometheus text of the Temporal runtime, proxied from its own endpoint) on `HEALTH_PORT`.

A tiny asyncio HTTP server: probes must keep working when everything else is busy or broken,
so it has no dependencies and every check has a short timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]  # raises (or times out) when not ready
CHECK_TIMEOUT = 2.0


class HealthServer:
    def __init__(self, port: int, checks: dict[str, Check], metrics_port: int = 0, host: str = "0.0.0.0"):
        self._port, self._host = port, host
        self._checks = checks
        self._metrics_port = metrics_port
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HealthServer:
        if self._port:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
            log.info("health endpoints on :%d (/health, /ready, /metrics)", self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        async def run(name: str, check: Check) -> tuple[str, str]:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT)
                return name, "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
                return name, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

        results = dict(await asyncio.gather(*(run(n, c) for n, c in self._checks.items())))
        return all(v == "ok" for v in results.values()), results

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            status, body, kind = await self._route(path.split("?")[0])
            head = f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[str, bytes, str]:
        if path == "/health":
            return "200 OK", b'{"status": "alive"}', "application/json"
        if path == "/ready":
            ready, checks = await self.readiness()
            body = json.dumps({"ready": ready, "checks": checks}).encode()
            return ("200 OK" if ready else "503 Service Unavailable"), body, "application/json"
        if path == "/metrics":
            if not self._metrics_port:
                return "404 Not Found", b"metrics are off: set METRICS_PORT\n", "text/plain"
            return "200 OK", await self._scrape(), "text/plain; version=0.0.4"
        return "404 Not Found", b"not found\n", "text/plain"

    async def _scrape(self) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self._metrics_port)
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), CHECK_TIMEOUT)
        finally:
            writer.close()
        return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw
