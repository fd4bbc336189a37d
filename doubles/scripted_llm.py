"""A scripted LLM server on loopback, for tests, benchmarks and the offline dev stack.

The real SDK clients talk to it over HTTP (`base_url`), on each provider's own path:
- Anthropic Messages: `POST /v1/messages` (`anthropic.AsyncAnthropic`);
- OpenAI Chat Completions: `POST /v1/chat/completions` or `/chat/completions` (`openai.AsyncOpenAI`,
  doubles/scripted_openai.py writes the OpenAI shapes);
- Bedrock: `POST /model/{model}/invoke` (`anthropic.AsyncAnthropicBedrock`, SigV4-signed; not checked);
- Vertex AI: `POST …/publishers/anthropic/models/{model}:rawPredict` (`anthropic.AsyncAnthropicVertex`),
  plus `POST /token`, an OAuth token endpoint for Google's Application Default Credentials.
Each model name has its own script, whatever the path, so concurrent tests never share answers: a
script is a list of steps consumed in order, each a reply (text or tool_use blocks), an HTTP error
(status, headers) or a malformed body, optionally held for some seconds first. Every request is
recorded with its API, path, headers and body. A model with no script answers with
`echo: <last user text>` (`echo*` models) or a clear 400.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from doubles.metering import METERED, PromptCache  # noqa: F401  (METERED: for scripts)
from doubles.scripted_openai import chat_completion, chat_error, messages_body


@dataclass
class Step:
    status: int = 200
    body: Any = None  # dict → JSON; str → raw text (malformed on purpose)
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without answering


_ids = itertools.count(1)


def message(content: list[dict[str, Any]], stop_reason: str, model: str, usage: tuple[int, ...] | dict[str, int]) -> dict[str, Any]:
    """`usage`: (input, output) tokens, optionally then (cache read, cache creation); or the
    counts themselves (metered from the request, doubles/metering.py)."""
    if isinstance(usage, dict):
        counts = dict(usage)
    else:
        counts = {"input_tokens": usage[0], "output_tokens": usage[1]}
        if len(usage) > 2:
            counts["cache_read_input_tokens"] = usage[2]
        if len(usage) > 3:
            counts["cache_creation_input_tokens"] = usage[3]
    return {
        "id": f"msg_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": counts,
    }


def text(reply: str, *, usage: tuple[int, ...] | None = (10, 5), stop_reason: str = "end_turn", hold: float = 0.0) -> Step:
    return Step(body={"content": [{"type": "text", "text": reply}], "stop_reason": stop_reason, "usage": usage}, hold=hold)


def tool_use(
    *calls: tuple[str, dict[str, Any]],
    say: str | None = None,
    usage: tuple[int, ...] | None = (10, 5),
    hold: float = 0.0,
    stop_reason: str = "tool_use",
) -> Step:
    """An assistant turn asking for one or more tool calls, optionally with some text first.
    `stop_reason="max_tokens"` scripts a turn cut while the model was still writing a call."""
    content: list[dict[str, Any]] = [{"type": "text", "text": say}] if say else []
    for name, arguments in calls:
        content.append({"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": arguments})
    return Step(body={"content": content, "stop_reason": stop_reason, "usage": usage}, hold=hold)


def error(status: int, msg: str = "scripted error", *, headers: dict[str, str] | None = None, hold: float = 0.0) -> Step:
    kind = {
        400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
        404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
    }.get(status, "api_error")
    return Step(status=status, body={"type": "error", "error": {"type": kind, "message": msg}}, headers=headers or {}, hold=hold)


def malformed(raw: str = "this is not json") -> Step:
    return Step(status=200, body=raw)


def drop(hold: float = 0.0) -> Step:
    """Close the connection without a response (a proxy or network failure)."""
    return Step(drop=True, hold=hold)


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]  # as sent, in the API's own format
    at: float = field(default_factory=time.monotonic)
    api: str = "anthropic"  # anthropic, openai, bedrock or vertex
    path: str = "/v1/messages"
    messages: dict[str, Any] = field(default_factory=dict)  # the body in Messages format (what the script saw)


_VERTEX = re.compile(r"/publishers/anthropic/models/([^/:]+):rawPredict$")
_BEDROCK = re.compile(r"^/model/([^/]+)/invoke$")


def route(path: str) -> tuple[str, str | None] | None:
    """(api, model named by the path) for a request path; None when no API lives there."""
    path = path.split("?")[0].rstrip("/")
    if path.endswith("/v1/messages"):
        return "anthropic", None
    if path.endswith("/chat/completions"):
        return "openai", None
    if found := _BEDROCK.search(path):
        return "bedrock", urllib.parse.unquote(found.group(1))
    if found := _VERTEX.search(path):
        return "vertex", urllib.parse.unquote(found.group(1))
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many loops call at once; the default backlog of 5 refuses them


class ScriptedLLM:
    """`with ScriptedLLM() as llm:` serves on `llm.base_url` until the block ends."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Step]] = defaultdict(list)
        self._requests: dict[str, list[Recorded]] = defaultdict(list)
        self._responders: dict[str, Callable[[dict[str, Any]], Step]] = {}
        self._server = _Server((host, port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-llm", daemon=True)
        self.tokens_issued = 0  # OAuth tokens handed out on /token (Vertex's credentials)
        self.prompt_cache = PromptCache()  # for steps scripted with `usage=METERED`

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, model: str, *steps: Step) -> None:
        with self._lock:
            self._scripts[model].extend(steps)

    def respond(self, model_prefix: str, responder: Callable[[dict[str, Any]], Step]) -> None:
        """Answer every request for models starting with `model_prefix` by a function."""
        with self._lock:
            self._responders[model_prefix] = responder

    def requests(self, model: str) -> list[Recorded]:
        with self._lock:
            return list(self._requests[model])

    def calls(self, model: str) -> int:
        return len(self.requests(model))

    def remaining(self, model: str) -> int:
        with self._lock:
            return len(self._scripts[model])

    def _next_step(self, body: dict[str, Any]) -> Step:
        model = str(body.get("model"))
        with self._lock:
            if self._scripts[model]:
                return self._scripts[model].pop(0)
            responder = next((f for p, f in self._responders.items() if model.startswith(p)), None)
        if responder is not None:
            return responder(body)
        if model.startswith("echo"):
            return offline_turn(body)
        return error(400, f"scripted LLM: no script left for model {model!r}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each small reply waits out a delayed ACK (~40 ms)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") == "/token":  # Google OAuth: a refresh-token grant
                    with server._lock:
                        server.tokens_issued += 1
                        token = f"ya29.scripted-{server.tokens_issued}"
                    return self._send(Step(body={"access_token": token, "expires_in": 3600, "token_type": "Bearer"}))
                routed = route(self.path)
                if routed is None:
                    return self._send(Step(status=404, body={"type": "error", "error": {"type": "not_found_error", "message": self.path}}))
                api, path_model = routed
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return self._send(error(400, "request body is not JSON"), api)
                model = path_model or str(body.get("model"))
                as_messages = messages_body(body) if api == "openai" else {**body, "model": model}
                with server._lock:
                    server._requests[model].append(
                        Recorded(
                            headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                            api=api, path=self.path, messages=as_messages,
                        )
                    )
                step = server._next_step(as_messages)
                if step.hold:
                    time.sleep(step.hold)
                if step.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if step.status == 200 and isinstance(step.body, dict) and "type" not in step.body:
                    usage = step.body["usage"]
                    if usage is METERED:
                        usage = server.prompt_cache.usage(as_messages, step.body["content"])
                    step = Step(
                        status=200,
                        body=message(step.body["content"], step.body["stop_reason"], model, usage),
                        headers=step.headers,
                    )
                self._send(step, api)

            def _send(self, step: Step, api: str = "anthropic") -> None:
                body = step.body
                if api == "openai" and isinstance(body, dict):
                    body = chat_completion(body) if body.get("type") == "message" else chat_error(body)
                elif api == "bedrock" and isinstance(body, dict) and body.get("type") == "error":
                    body = {"message": body["error"]["message"]}  # Bedrock's own error shape
                payload = body if isinstance(body, str) else json.dumps(body)
                data = payload.encode()
                try:
                    self.send_response(step.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in step.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a killed worker): nothing to answer

        return Handler


_ARITHMETIC = re.compile(r"[-+(]*\d[\d\s+\-*/().%]*[\d)]")


def offline_turn(body: dict[str, Any]) -> Step:
    """The offline model of `echo*` models: enough to see an agent loop work without a provider.
    Offered tools and a fresh task: call the first tool (`calculate` gets the task's arithmetic).
    Tool results in the last message: answer with them. Otherwise: echo the prompt."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    results = [b for b in content or [] if isinstance(content, list) and isinstance(b, dict) and b.get("type") == "tool_result"]
    if results:
        answers = "; ".join(str(r.get("content")) for r in results)
        return text(f"Done. The tools answered: {answers}")
    tools = body.get("tools") or []
    if tools and len(messages) == 1:
        name = tools[0]["name"]
        task = last_user_text(body)
        found = _ARITHMETIC.search(task)
        arguments = {"expression": found.group(0).strip()} if name == "calculate" and found else {}
        return tool_use((name, arguments), say=f"I will use {name}.")
    return text(f"echo: {last_user_text(body)}")


def last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        if texts:
            return "".join(texts)
    return ""
