"""MCP "servers" that never answer, for the handshake and discovery timeout tests.

- stdio (default): reads its stdin and never writes a byte, until stdin closes (then exits).
- `--answer-initialize`: stdio, completes the handshake, then answers nothing else (`tools/list`
  hangs), so discovery, not the handshake, is what times out.
- `--http --port N`: accepts connections and reads requests, never answers (an HTTP endpoint
  that hangs).

Each start appends one JSON line (pid, mode) to the file named by `--log`, so a test can see the
pool contacted the server and, by the pids, that it stopped the processes it retired.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys


def record(path: str | None, mode: str) -> None:
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "mode": mode}) + "\n")


def silent_stdio() -> None:
    while sys.stdin.buffer.read(4096):
        pass


def answer_initialize_only() -> None:
    """Speak just enough JSON-RPC to finish the handshake; every other request is left hanging."""
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # a notification (`notifications/initialized`)
        if method == "initialize":
            reply = {"result": {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "mute-tools", "version": "1.0.0"},
            }}
        elif method == "ping":
            reply = {"result": {}}
        elif method == "server/discover":  # a legacy server: the client falls back to initialize
            reply = {"error": {"code": -32601, "message": "Method not found"}}
        else:
            continue
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, **reply}) + "\n")
        sys.stdout.flush()


async def silent_http(port: int) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", default=None)
    parser.add_argument("--answer-initialize", action="store_true")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.http:
        record(args.log, "http")
        asyncio.run(silent_http(args.port))
    elif args.answer_initialize:
        record(args.log, "answer-initialize")
        answer_initialize_only()
    else:
        record(args.log, "stdio")
        silent_stdio()


if __name__ == "__main__":
    main()
