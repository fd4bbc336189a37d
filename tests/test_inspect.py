"""What operators see: search attributes, summaries and details in Temporal."""

from __future__ import annotations

import asyncio
import json
import uuid

from adapters import search_attributes
from core import search_attributes as sa
from adapters.settings import Settings
from executor.local_services import free_port, temporal_binary
from doubles.scripted_llm import text, tool_use
from adapters.temporal_client import connect
from tests.support.history import start_attributes, upserts
from tests.support.stack import Stack


def test_search_attributes_list_a_graphs_nodes_and_failed_agents(stack: Stack, llm) -> None:
    graph = f"g-{uuid.uuid4().hex[:8]}"
    model = f"claude-sa-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "1+"})), text("x", stop_reason="max_tokens"))
    stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "1+1"}}, graph_id=graph, node_id="a")
    stack.submit_node({"llm_config": {"model": model}, "tools": ["calculate"]}, graph_id=graph, node_id="b")
    stack.wait_event(graph, "a")
    assert stack.wait_event(graph, "b")["type"] == "node.failed"

    async def query(client, q: str, expect: int) -> set[str]:
        found: set[str] = set()
        for _ in range(50):  # visibility is eventually consistent
            found = {w.id async for w in client.list_workflows(q)}
            if len(found) >= expect:
                break
            await asyncio.sleep(0.1)
        return found

    nodes = stack.temporal(lambda c: query(c, f"DagoGraphId = '{graph}'", 2))
    assert {w.split(":")[2] for w in nodes} == {"a", "b"}
    failed_agents = stack.temporal(lambda c: query(c, f"DagoGraphId = '{graph}' AND DagoMode = 'agent' AND DagoOutcome = 'failed'", 1))
    assert [w.split(":")[2] for w in failed_agents] == ["b"]

    async def described(client):
        handle = client.get_workflow_handle(next(iter(failed_agents)))
        d = await handle.describe()
        return await d.static_summary(), d.typed_search_attributes.get(sa.MODEL)

    summary, model_attr = stack.temporal(described)
    assert summary == f"graph {graph} · node b · mode agent · model {model}" and model_attr == model


def test_activity_summaries_read_as_iterations(stack: Stack, llm) -> None:
    model = f"claude-sum-{uuid.uuid4().hex[:6]}"
    llm.script(model, tool_use(("calculate", {"expression": "2+2"})), text("4"))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"]})
    stack.wait_event(graph, node)
    history = stack.temporal(lambda c: c.get_workflow_handle(wid).fetch_history())
    from temporalio.contrib.pydantic import pydantic_data_converter

    summaries = [
        pydantic_data_converter.payload_converter.from_payload(e.user_metadata.summary, str)
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes") or e.HasField("marker_recorded_event_attributes")  # local steps: markers
    ]
    assert summaries == [
        "resolve", "describe tools calculate",
        f"iteration 1 · llm {model}", "iteration 1 · tool calculate", f"iteration 2 · llm {model}",
        "emit completed",
    ]


def test_unregistered_search_attributes_are_detected_not_fatal() -> None:
    import subprocess

    port = free_port()
    proc = subprocess.Popen(
        [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async def check() -> bool:
            for _ in range(100):
                try:
                    client = await connect(Settings(temporal_address=f"127.0.0.1:{port}"))
                    return await search_attributes.registered(client, "default")
                except RuntimeError:
                    await asyncio.sleep(0.1)
            raise AssertionError("dev server did not start")

        assert asyncio.run(check()) is False
    finally:
        proc.terminate()
        proc.wait(10)


def _attributes(stack: Stack, workflow_id: str) -> tuple[dict[str, str], list[list[str]]]:
    """(the search attributes the run started with, the names each upsert in its history set)."""
    history = stack.temporal(lambda c: c.get_workflow_handle(workflow_id).fetch_history())
    return start_attributes(history), upserts(history)


def test_ingress_sets_search_attributes_at_start_and_the_workflow_upserts_only_the_outcome(stack: Stack, llm) -> None:
    """What the envelope tells goes in at start (no upsert, no extra visibility write); the
    workflow adds only its outcome."""
    model = f"claude-start-{uuid.uuid4().hex[:6]}"
    llm.script(model, text("done"))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model}, "tools": ["calculate"]})
    assert stack.wait_event(graph, node)["type"] == "node.completed"
    at_start, upserts = _attributes(stack, wid)
    assert at_start == {"DagoGraphId": graph, "DagoNodeId": node, "DagoMode": "agent", "DagoModel": model}
    assert upserts == [["DagoOutcome"]]


def test_workflow_upserts_what_only_its_resolve_step_knew(stack: Stack) -> None:
    """The orchestrator's envelope carries no config: the ingress knows graph and node, the
    resolve step finds the mode in the graph state and the workflow upserts it."""
    from tests.support.stack import ORCHESTRATOR_WORK

    graph, event_id = f"g-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    stack.redis.set(f"dago:state:{graph}", json.dumps({"graph": {"nodes": {"n1": {"config": {"tool_name": "calculate", "tool_params": {"expression": "2*3"}}}}}}), ex=600)
    stack.submit({"id": event_id, "type": "node.work", "execution_id": graph, "data": {"node_id": "n1", "graph_id": graph}}, stream=ORCHESTRATOR_WORK)
    assert stack.wait_event(graph, "n1")["data"]["output"] == 6
    at_start, upserts = _attributes(stack, f"node:{graph}:n1:{event_id}")
    assert at_start == {"DagoGraphId": graph, "DagoNodeId": "n1"}
    assert upserts == [["DagoMode"], ["DagoOutcome"]]


def test_a_node_failing_its_resolve_step_is_listed_by_outcome(stack: Stack) -> None:
    graph, node, wid = stack.submit_agent({"llm_config": {"prompt": "{{nothing}}"}})
    assert stack.wait_event(graph, node)["type"] == "node.failed"
    assert _attributes(stack, wid)[1] == [["DagoOutcome"]]
