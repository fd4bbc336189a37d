"""The benchmark's Messages-API server, in its own process (`python -m bench.llm_server`).

A small asyncio server (one coroutine per connection, one write per response), speaking the
scripted LLM's language (its reply helpers come from doubles/scripted_llm.py): `echo*` models
echo the prompt at once; `bench-agent-k<K>*` models answer with a `calculate` tool_use for the
first K-1 turns of a transcript and with text on turn K (an agent node of K iterations);
`bench-long-r<R>-kb<K>*` models ask for K KiB of the `blob` tool R times, then answer, their
usage metered with a prompt cache (doubles/metering.py; `GET /conversation/<model>` gives the last
request's message count and bytes); `bench-hold*` models are held until `POST /release` (or `--hold` seconds), then answered with
text. `GET /stats` reports how many calls are held now and the most held at once; `POST /reset`
holds again and restarts the high-water marks.

Why not `ScriptedLLM` itself: it is a `ThreadingHTTPServer` (a thread per connection: 2000 held
calls would be 2000 threads), its listen backlog is socketserver's 5 (simultaneous connects beyond
that are reset: 51 of 100 concurrent first calls failed in a probe), and it writes headers and
body separately without TCP_NODELAY, so every call waits out a delayed ACK: 44 ms p50 per call
against 0.9 ms with `disable_nagle_algorithm = True`. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from typing import Any

from doubles.metering import PromptCache
from doubles.scripted_llm import Step, last_user_text, message, text, tool_use

AGENT_MODEL = re.compile(r"^bench-agent-k(\d+)")
LONG_MODEL = re.compile(r"^bench-long-r(\d+)-kb(\d+)")  # the long-loop row (bench/long_loop.py)


def agent_turns(k: int, body: dict[str, Any]) -> Step:
    """Turn n (1-based) of a k-iteration agent: calculate for n < k, then the final text."""
    done = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
    if done < k - 1:
        return tool_use(("calculate", {"expression": f"{done}+1"}))
    return text(f"done after {done + 1} turns")


def long_loop_turn(body: dict[str, Any]) -> Step:
    """Round n of a long loop: the `blob` tool for K KiB, R times, then the final text."""
    match = LONG_MODEL.match(str(body.get("model")))
    assert match is not None
    rounds, kib = int(match.group(1)), int(match.group(2))
    done = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
    if done < rounds:
        return tool_use(("blob", {"kilobytes": kib, "tag": f"part {done + 1} of {rounds}"}))
    return text(f"read all {rounds} parts")


def agent_responder(body: dict[str, Any]) -> Step:
    match = AGENT_MODEL.match(str(body.get("model")))
    return agent_turns(int(match.group(1)) if match else 1, body)


# -- the asyncio server ------------------------------------------------------------------------


class SlowLLM:
    def __init__(self, hold_limit: float):
        self.hold_limit = hold_limit
        self.held = 0
        self.max_held = 0
        self.served = 0
        self.connections = 0
        self.max_connections = 0
        self.release = asyncio.Event()
        self.prompt_cache = PromptCache()
        self.conversations: dict[str, dict[str, int]] = {}  # long-loop model -> its last request's messages

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model"))
        if LONG_MODEL.match(model):  # metered like the provider bills it, the conversation's size kept
            step = long_loop_turn(body)
            messages = body.get("messages") or []
            self.conversations[model] = {"messages": len(messages), "bytes": sum(len(json.dumps(m)) for m in messages)}
            return message(step.body["content"], step.body["stop_reason"], model, self.prompt_cache.usage(body, step.body["content"]))
        if model.startswith("bench-agent"):
            step = agent_responder(body)
        else:
            step = text(f"echo: {last_user_text(body)}")
        return message(step.body["content"], step.body["stop_reason"], model, step.body["usage"])

    async def reply(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/stats":
            return 200, {
                "held": self.held, "max_held": self.max_held, "served": self.served,
                "connections": self.connections, "max_connections": self.max_connections,
            }
        if method == "GET" and path.startswith("/conversation/"):
            return 200, self.conversations.get(path.removeprefix("/conversation/"), {"messages": 0, "bytes": 0})
        if method == "POST" and path == "/release":
            self.release.set()
            return 200, {"released": self.held}
        if method == "POST" and path == "/reset":
            self.release = asyncio.Event()
            self.max_held = self.held
            self.max_connections = self.connections
            return 200, {}
        if method != "POST" or not path.rstrip("/").endswith("/v1/messages"):
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
        body = json.loads(raw)
        if str(body.get("model")).startswith("bench-hold"):
            self.held += 1
            self.max_held = max(self.max_held, self.held)
            try:
                release = self.release
                try:
                    await asyncio.wait_for(release.wait(), self.hold_limit)
                except TimeoutError:
                    pass
            finally:
                self.held -= 1
        self.served += 1
        return 200, self.answer(body)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.max_connections = max(self.max_connections, self.connections)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                status, payload = await self.reply(method, path, raw)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(data)}\r\n\r\n".encode() + data
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.connections -= 1
            writer.close()


async def run_slow(port: int, hold: float) -> None:
    server_state = SlowLLM(hold)
    server = await asyncio.start_server(server_state.connection, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    sys.stdout.flush()
    os._exit(0)  # held connections would otherwise print their cancellation at shutdown


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hold", type=float, default=300.0, help="longest hold of a bench-hold call before answering anyway")
    args = p.parse_args()
    asyncio.run(run_slow(args.port, args.hold))


if __name__ == "__main__":
    main()
