"""Operators read an encrypted agent node in the Temporal Web UI through the codec server.

Its own stack: encryption on (adapters/encryption.py), the dev server's UI told where the codec
server is (`--ui-codec-endpoint http://127.0.0.1:<port>/<token>`: the browser cannot add a header,
so the token is the endpoint's path, executor/codec_server.py), and the codec server allowing the
UI's origin. Headless Chromium (tests/support/browser.py) reads the workflow's pages as a person
would. With the codec server up, the steps' summaries (`iteration 1 · llm <model>`) and the tool's
output read in clear; with it down, the same page shows only ciphertext (`binary/encrypted`).

Screenshots, kept in test-artifacts/: ui-codec-timeline.png, ui-codec-history.png (decrypted),
ui-codec-without-codec.png (ciphertext)."""

from __future__ import annotations

import base64
import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

import pytest

from adapters.encryption import new_key
from doubles.scripted_llm import ScriptedLLM, text, tool_use
from executor.local_services import Proc, free_port, wait_for_port
from tests.conftest import ARTIFACTS
from tests.support.browser import CHROMIUM, INSTALL, Browser, chromium_path
from tests.support.stack import Stack, run_stack

TOKEN = "ui-codec-" + uuid.uuid4().hex


@dataclass
class UI:
    stack: Stack
    url: str
    codec_port: int
    log: IO[str]

    def start_codec(self) -> Proc:
        proc = self.stack.start_service(
            "codec-server", CODEC_SERVER_PORT=str(self.codec_port), CODEC_SERVER_TOKEN=TOKEN, CODEC_CORS_ORIGINS=self.url,
        )
        wait_for_port(self.codec_port, proc=proc)
        return proc


@dataclass
class AgentNode:
    workflow_id: str
    run_id: str
    model: str
    tool_output: str
    answer: str


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[UI]:
    if chromium_path() is None:  # never a silent pass: CI installs it (make test does)
        pytest.fail(f"headless Chromium is needed for the Temporal UI test and {CHROMIUM} is missing: {INSTALL} (as root; `make test` does it)")
    ARTIFACTS.mkdir(exist_ok=True)
    ui_port, codec_port = free_port(), free_port()
    with open(ARTIFACTS / "ui-codec-stack.log", "w") as log, contextlib.closing(
        run_stack(
            tmp_path_factory.mktemp("ui-codec"), log, llm, ui_port=ui_port,
            codec_endpoint=f"http://127.0.0.1:{codec_port}/{TOKEN}", ENCRYPTION_KEYS=f"ui={new_key()}",
        )
    ) as stacks:
        stack = next(stacks)
        wait_for_port(ui_port, timeout=30, proc=stack.procs["temporal"])
        ui = UI(stack, f"http://127.0.0.1:{ui_port}", codec_port, log)
        ui.start_codec()
        yield ui


@pytest.fixture(scope="module")
def browser(ui: UI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium-profile"), ui.log) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def agent_node(ui: UI, llm: ScriptedLLM) -> AgentNode:
    tag = uuid.uuid4().hex[:8]
    model, tool_output, answer = f"claude-codec-{tag}", f"tool-out-{tag}", f"answer-{tag}"
    llm.script(model, tool_use(("echo", {"text": tool_output}), say="Let me echo."), text(answer))
    graph, node, workflow_id = ui.stack.submit_agent({"llm_config": {"model": model}, "tools": ["echo"], "task": f"Echo {tool_output}"})
    event = ui.stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == answer, event
    return AgentNode(workflow_id, event["data"]["run_id"], model, tool_output, answer)


def open_tab(browser: Browser, ui: UI, node: AgentNode, tab: str) -> None:
    browser.goto(f"{ui.url}/namespaces/default/workflows/{quote(node.workflow_id, safe='')}/{node.run_id}/{tab}")


def tool_completed_event(ui: UI, node: AgentNode) -> int:
    """The id of the event that carries the tool's result (its Activity Task Completed)."""
    history = ui.stack.temporal(lambda c: c.get_workflow_handle(node.workflow_id).fetch_history())
    scheduled = {
        e.event_id for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes") and e.activity_task_scheduled_event_attributes.activity_type.name == "call_tool"
    }
    [completed] = [
        e.event_id for e in history.events
        if e.HasField("activity_task_completed_event_attributes") and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]
    return completed


def test_the_timeline_shows_the_decrypted_step_summaries(browser: Browser, ui: UI, agent_node: AgentNode) -> None:
    n = agent_node
    open_tab(browser, ui, n, "timeline")
    try:
        browser.wait_for_text(n.workflow_id, "COMPLETED", f"call_llm • iteration 1 · llm {n.model}", "call_tool • iteration 1 · tool echo", f"call_llm • iteration 2 · llm {n.model}")
    finally:
        browser.screenshot(ARTIFACTS / "ui-codec-timeline.png")


def test_the_event_history_shows_the_decrypted_tool_output(browser: Browser, ui: UI, agent_node: AgentNode) -> None:
    n = agent_node
    open_tab(browser, ui, n, f"history/events/{tool_completed_event(ui, n)}")  # that event, opened
    try:
        page = browser.wait_for_text(n.workflow_id, "COMPLETED", "Activity Task Completed", n.tool_output, "Summary iteration 1 · tool echo")
        assert re.search(r'"output": \{ "result": "(http|stdio): ' + n.tool_output + '"', page), page[:3000]
    finally:
        browser.screenshot(ARTIFACTS / "ui-codec-history.png")


def test_without_the_codec_server_the_ui_shows_ciphertext(browser: Browser, ui: UI, agent_node: AgentNode) -> None:
    n = agent_node
    ui.stack.procs["codec-server"].stop()
    try:
        open_tab(browser, ui, n, f"history/events/{tool_completed_event(ui, n)}")
        try:
            # the UI says so, and shows the payloads as they are stored: AES-GCM ciphertext under
            # the base64 of their metadata (`binary/encrypted`, key id `ui`)
            encrypted = base64.b64encode(b"binary/encrypted").decode()
            page = browser.wait_for_text(
                n.workflow_id, "COMPLETED", "Codec Server could not connect", "Activity Task Completed", "Summary Decoding failed",
                f'"encoding": "{encrypted}", "encryption-key-id": "{base64.b64encode(b"ui").decode()}" }}, "data": "',
            )
        finally:
            browser.screenshot(ARTIFACTS / "ui-codec-without-codec.png")
        assert n.tool_output not in page and "iteration 1 · tool echo" not in page and n.answer not in page
    finally:
        ui.start_codec()
