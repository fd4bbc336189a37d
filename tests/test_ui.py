"""Operators can read an agent node in the Temporal Web UI.

Its own stack with the dev server's Web UI on, one finished agent node (scripted: one `calculate`
call, then a final answer), and headless Chromium (Debian's package, driven over the DevTools
protocol on a pipe: tests/support/browser.py) reading the workflow's pages as a person would: the
visible text, iframes included. Pages are `/namespaces/default/workflows/<url-encoded workflow
id>/<run id>/<tab>`. Where the UI (2.54) shows what:

- the workflow's static summary `graph <id> · node <id> · mode agent · model <model>`: the "User Metadata" tab
  (`user-metadata`, with details and current details, each rendered in its own iframe), and the
  "All" view of the "Event History" tab (`history`), on the Workflow Execution Started event;
- the steps' activity summaries: the "Timeline" tab (`timeline`, the default tab), one row per
  activity labelled `<activity type> • <summary>`, in the order they ran; the "All" view of the
  Event History (the `Summary` of each Activity Task Scheduled event) and its "Compact" view (one
  row per activity). The "JSON" view pages through raw events one at a time, so it is not checked.

Screenshots, kept in test-artifacts/: ui-agent-node.png (Event History "All": the workflow summary
and every step in one picture), ui-agent-node-timeline.png, ui-agent-node-summary.png (User
Metadata), ui-agent-node-compact.png."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

import pytest

from executor.local_services import free_port, wait_for_port
from doubles.scripted_llm import ScriptedLLM, text, tool_use
from tests.conftest import ARTIFACTS
from tests.support.browser import CHROMIUM, INSTALL, Browser, chromium_path
from tests.support.stack import Stack, run_stack, wait_until


@dataclass
class UI:
    stack: Stack
    url: str  # http://127.0.0.1:<ui port>
    log: IO[str]


LOCAL_STEPS = ("resolve_node", "describe_tools")  # local activities as shipped (LOCAL_STEPS=true)


@dataclass
class AgentNode:
    graph: str
    node: str
    workflow_id: str
    run_id: str
    model: str

    def steps(self) -> list[tuple[str, str]]:
        """(activity type, summary) of each step, in the order they ran."""
        return [
            ("resolve_node", "resolve"),
            ("describe_tools", "describe tools calculate"),
            ("call_llm", f"iteration 1 · llm {self.model}"),
            ("call_tool", "iteration 1 · tool calculate"),
            ("call_llm", f"iteration 2 · llm {self.model}"),
            ("emit_result", "emit completed"),
        ]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[UI]:
    if chromium_path() is None:  # never a silent pass: CI installs it (make test does)
        pytest.fail(f"headless Chromium is needed for the Temporal UI test and {CHROMIUM} is missing: {INSTALL} (as root; `make test` does it)")
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    with open(ARTIFACTS / "ui-stack.log", "w") as log, contextlib.closing(
        run_stack(tmp_path_factory.mktemp("ui"), log, llm, ui_port=port)
    ) as stacks:
        stack = next(stacks)
        wait_for_port(port, timeout=30, proc=stack.procs["temporal"])
        yield UI(stack, f"http://127.0.0.1:{port}", log)


@pytest.fixture(scope="module")
def browser(ui: UI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium-profile"), ui.log) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def agent_node(ui: UI, llm: ScriptedLLM) -> AgentNode:
    model = f"claude-ui-{uuid.uuid4().hex[:8]}"
    llm.script(model, tool_use(("calculate", {"expression": "6*7"}), say="Let me compute."), text("It is 42."))
    config = {"llm_config": {"model": model, "max_tokens": 1024}, "tools": ["calculate"], "task": "What is 6*7?"}
    graph, node, workflow_id = ui.stack.submit_agent(config)
    event = ui.stack.wait_event(graph, node)
    assert event["type"] == "node.completed" and event["data"]["output"]["result"] == "It is 42.", event
    assert event["data"]["workflow_id"] == workflow_id
    return AgentNode(graph, node, workflow_id, event["data"]["run_id"], model)


def open_tab(browser: Browser, ui: UI, node: AgentNode, tab: str, *needles: str, shot: str | None = None) -> str:
    """Load a tab of the workflow's page and wait for the needles in its visible text; keep a
    screenshot when asked (also when the wait fails, to see why)."""
    browser.goto(f"{ui.url}/namespaces/default/workflows/{quote(node.workflow_id, safe='')}/{node.run_id}/{tab}")
    try:
        # Every tab has the header: the workflow id, its run and its status.
        return browser.wait_for_text(node.workflow_id, node.run_id, "COMPLETED", *needles)
    finally:
        if shot:
            browser.screenshot(ARTIFACTS / shot)


def test_workflow_summary_and_details_in_user_metadata_tab(browser: Browser, ui: UI, agent_node: AgentNode) -> None:
    n = agent_node
    summary = f"graph {n.graph} · node {n.node} · mode agent · model {n.model}"  # set at start by the ingress
    current = summary  # set by the workflow after resolving
    open_tab(browser, ui, n, "user-metadata", "Summary", summary, "Current Details", current, shot="ui-agent-node-summary.png")
    # Each is rendered in its own iframe: the summary is in the Summary box, not just somewhere.
    frames = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('iframe[id^=user-metadata-]')]"
        ".map(f => [f.id, f.contentDocument.body.innerText.trim()]))"
    )
    assert frames["user-metadata-summary"] == summary, frames
    assert frames["user-metadata-current-details"] == current, frames
    assert frames["user-metadata-details"].startswith("from executor.work entry "), frames


def test_steps_in_order_on_the_timeline(browser: Browser, ui: UI, agent_node: AgentNode) -> None:
    # The timeline names a local step (resolve and describe, as shipped) by its activity type alone;
    # the event history below shows its summary too.
    labels = [kind if kind in LOCAL_STEPS else f"{kind} • {summary}" for kind, summary in agent_node.steps()]
    page = open_tab(browser, ui, agent_node, "timeline", "Timeline", *labels, shot="ui-agent-node-timeline.png")
    assert page.count("call_tool •") == 1 and page.count("call_llm •") == 2
    # One row per step, the rows in the order the steps ran (the UI puts the newest on top by
    # default; either direction is fine as long as the rows follow the run).
    rows = browser.evaluate(
        f"(labels => Object.fromEntries([...document.querySelectorAll('span')]"
        ".filter(s => labels.includes(s.textContent.trim()))"
        f".map(s => [s.textContent.trim(), s.getBoundingClientRect().top])))({json.dumps(labels)})"
    )
    tops = [rows.get(label) for label in labels]
    assert None not in tops, f"labels not drawn as rows: {rows}"
    assert tops in (sorted(tops), sorted(tops, reverse=True)) and len(set(tops)) == len(tops), f"rows out of run order: {rows}"


def test_summaries_in_the_event_history_all_and_compact(browser: Browser, ui: UI, agent_node: AgentNode) -> None:
    n = agent_node
    fields = [f"Activity Type {kind} Summary {summary}" for kind, summary in n.steps()]
    started = f"Workflow Execution Started Workflow Type Name NodeWorkflow Summary graph {n.graph} · node {n.node} · mode agent · model {n.model}"
    open_tab(browser, ui, n, "history", "Event History")
    # "All": every event; the workflow's summary is on its started event, each step's on the
    # Activity Task Scheduled event of its activity. One page: the whole story of the node.
    browser.click("button[data-testid=feed]")
    try:
        browser.wait_for_text("Activity Task Scheduled", started, *fields)
    finally:
        browser.screenshot(ARTIFACTS / "ui-agent-node.png")
    # "Compact": one row per activity (scheduled, started, completed together) with its summary.
    browser.click("button[data-testid=compact]")
    try:
        wait_until(lambda: "Activity Task Scheduled" not in browser.text(), timeout=20, message="the Compact view")
        browser.wait_for_text(*fields)
    finally:
        browser.screenshot(ARTIFACTS / "ui-agent-node-compact.png")
