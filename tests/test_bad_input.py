"""Bad input, through the real ingress and worker: every kind ends in a clear `node.failed`, or in
a dead-letter entry with its reason when no graph and node ids can be recovered; the entry is
acked and the worker carries on."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.support.stack import ORCHESTRATOR_WORK, WORK, Stack, wait_until

G = "{graph}"  # replaced by a fresh graph id per case


def envelope(config: object, **extra: object) -> dict:
    return {"graph_id": G, "node_id": "n1", "node_type": "executor", "config": config, **extra}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def agent(**fields: object) -> dict:
    return envelope({"llm_config": {"model": "echo-x"}, "tools": ["calculate"], **fields})


# (case id, entry data (str/bytes raw, or a document), expected: ("failed", text) | ("dead", text))
CASES: list[tuple[str, object, tuple[str, str]]] = [
    ("not_json", "{graph_id: oops", ("dead", "data is not JSON")),
    ("json_not_object", "[1, 2, 3]", ("dead", "data must be a JSON object, got list")),
    ("json_string", '"just a string"', ("dead", "data must be a JSON object, got str")),
    ("invalid_utf8", b"\xff\xfe\xfd{", ("dead", "data is not valid UTF-8")),
    ("missing_graph_id", {"node_id": "n1", "config": {}}, ("dead", "work item: graph_id: Field required")),
    ("empty_node_id", {"graph_id": G, "node_id": "", "config": {}}, ("dead", "work item: node_id: String should have at least 1 character")),
    ("graph_id_not_string", {"graph_id": 12, "node_id": "n1", "config": {}}, ("dead", "work item: graph_id: Input should be a valid string")),
    ("config_not_object", envelope("tool_name=calculate"), ("failed", "malformed work item: work item: config: Input should be a valid dictionary")),
    ("dependencies_wrong_type", envelope({"tool_name": "calculate"}, dependencies={"a": 1}), ("failed", "work item: dependencies: Input should be a valid list")),
    ("orchestrator_without_node_id", {"id": "e", "execution_id": G, "data": {"graph_id": G}}, ("dead", "work item: data.node_id: Field required")),
    ("neither_tool_nor_llm", envelope({"prompt": "hi"}), ("failed", "node config: tool_name required for tool mode (config has neither tool_name nor llm_config)")),
    ("unknown_type", envelope({"type": "quantum", "tool_name": "calculate"}), ("failed", "node config: unknown type 'quantum' (expected one of agent, llm, tool)")),
    ("llm_without_prompt", envelope({"llm_config": {"model": "echo-x"}}), ("failed", "node config: llm_config.prompt required for llm mode")),
    ("agent_without_tools", envelope({"type": "agent", "llm_config": {}}), ("failed", "node config: tools required for agent mode (a non-empty list)")),
    ("tools_not_strings", agent(tools=[1, None]), ("failed", "node config: tools.0: Input should be a valid string")),
    ("tool_params_not_object", envelope({"tool_name": "calculate", "tool_params": "2+2"}), ("failed", "node config: tool_params must be a JSON object")),
    ("approval_for_unlisted_tool", agent(require_approval=["delete_all"]), ("failed", "node config: require_approval names tools not in tools: delete_all")),
    ("negative_max_iterations", agent(max_iterations=-5), ("failed", "node config: max_iterations: Input should be greater than or equal to 1")),
    ("huge_max_iterations", agent(max_iterations=10**9), ("failed", "node config: max_iterations: Input should be less than or equal to 10000")),
    ("temperature_out_of_range", envelope({"llm_config": {"prompt": "p", "temperature": 7}}), ("failed", "node config: llm_config.temperature: Input should be less than or equal to 1")),
    ("max_tokens_zero", envelope({"llm_config": {"prompt": "p", "max_tokens": 0}}), ("failed", "node config: llm_config.max_tokens: Input should be greater than or equal to 1")),
    ("max_tokens_huge", envelope({"llm_config": {"prompt": "p", "max_tokens": 10**8}}), ("failed", "node config: llm_config.max_tokens: Input should be less than or equal to 128000")),
    ("negative_timeout", envelope({"tool_name": "calculate", "timeout": -1}), ("failed", "node config: timeout: Input should be greater than 0")),
    ("unknown_template_variable", envelope({"llm_config": {"prompt": "Hi {{who}}"}}), ("failed", "unknown template variable: who")),
    ("unknown_tool", envelope({"tool_name": "launch_rockets"}), ("failed", "unknown tool 'launch_rockets'")),
    ("qualified_unknown_server", envelope({"tool_name": "mcp__nowhere__echo"}), ("failed", "unknown tool 'mcp__nowhere__echo': no configured MCP server 'nowhere'")),
    ("tool_arguments_break_schema", envelope({"tool_name": "calculate", "tool_params": {"expr": "1+1"}}), ("failed", "tool calculate: invalid arguments: 'expression' is a required property")),
    ("calculate_not_arithmetic", envelope({"tool_name": "calculate", "tool_params": {"expression": "__import__('os').system('id')"}}), ("failed", "tool calculate: not arithmetic")),
    ("calculate_huge", envelope({"tool_name": "calculate", "tool_params": {"expression": "9**9**9"}}), ("failed", "tool calculate: exponent 387420489 is too large (limit 10000)")),
    ("url_as_tool_name", envelope({"tool_name": "http://evil.example/mcp"}), ("failed", "unknown tool 'http://evil.example/mcp'")),
]


def materialise(doc: object, graph: str) -> str | bytes:
    if isinstance(doc, bytes):
        return doc
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return text.replace(G, graph)


@pytest.mark.parametrize(("doc", "expected"), [(d, e) for _, d, e in CASES], ids=[c for c, _, _ in CASES])
def test_bad_input_fails_clearly(stack: Stack, doc: object, expected: tuple[str, str]) -> None:
    graph = f"bad-{uuid.uuid4().hex[:10]}"
    entry_id = stack.redis.xadd(WORK, {"data": materialise(doc, graph)})
    kind, text = expected
    if kind == "failed":
        event = stack.wait_event(graph, "n1")
        assert event["type"] == "node.failed"
        assert text in event["data"]["error"], event["data"]["error"]
    else:
        [dead] = wait_until(lambda: [d for d in stack.dead_letters() if d["entry_id"] == entry_id], message="dead letter")
        assert dead["reason"].startswith(text), dead["reason"]
        assert dead["stream"] == WORK
    wait_until(lambda: stack.pending() == 0, message="entry acked")


def test_oversized_entry_is_dead_lettered(stack: Stack) -> None:
    entry_id = stack.redis.xadd(WORK, {"data": json.dumps({"graph_id": "big", "node_id": "n1", "config": {"pad": "x" * 1_100_000}})})
    [dead] = wait_until(lambda: [d for d in stack.dead_letters() if d["entry_id"] == entry_id], message="dead letter")
    assert dead["reason"].startswith("entry too large: 1100")
    wait_until(lambda: stack.pending() == 0, message="entry acked")


def test_entry_without_data_field_is_dead_lettered(stack: Stack) -> None:
    entry_id = stack.redis.xadd(WORK, {"payload": "{}", "other": "x"})
    [dead] = wait_until(lambda: [d for d in stack.dead_letters() if d["entry_id"] == entry_id], message="dead letter")
    assert dead["reason"] == "entry has no 'data' field (fields: other, payload)"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, "graph state dago:state:{graph} not found"),
        ("{not json", "graph state dago:state:{graph} is not JSON"),
        (json.dumps({"graph": {"nodes": {"other": {"config": {}}}}}), "node 'n1' not found in graph '{graph}'"),
        ("[" * 5000 + "]" * 5000, "graph state dago:state:{graph} is nested too deeply to read"),
        (json.dumps({"graph": {"nodes": {"n1": {"config": {"tool_name": "calculate", "tool_params": {"x": "DEEP"}}}}}}).replace('"DEEP"', nested(150)),
         "node config: nested more than 100 levels deep"),
    ],
    ids=["missing_state", "state_not_json", "node_absent_from_graph", "state_too_deep_to_parse", "config_in_state_too_deep"],
)
def test_orchestrator_envelope_with_bad_graph_state(stack: Stack, state: str | None, expected: str) -> None:
    graph = f"bad-{uuid.uuid4().hex[:10]}"
    if state is not None:
        stack.redis.set(f"dago:state:{graph}", state, ex=600)
    stack.submit({"id": str(uuid.uuid4()), "type": "node.work", "execution_id": graph, "data": {"node_id": "n1", "graph_id": graph}}, stream=ORCHESTRATOR_WORK)
    event = stack.wait_event(graph, "n1")
    assert event["type"] == "node.failed" and event["data"]["error"].startswith(expected.format(graph=graph))


# -- entries that used to kill the ingress ---------------------------------------------------
# Each must end in its dead letter or node.failed, with the ingress still alive and serving.


def assert_ingress_still_serves(stack: Stack) -> None:
    """The ingress process is alive, and a good node submitted now completes."""
    assert stack.procs["ingress"].alive(), "the ingress died"
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "20+22"}})
    event = stack.wait_event(graph, node, timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"] == 42
    assert stack.procs["ingress"].alive(), "the ingress died"


def calc_envelope(**config: object) -> dict:
    return envelope({"tool_name": "calculate", "tool_params": {"expression": "1+1"}, **config})


LONE_SURROGATE = "\ud800"  # json.dumps writes it as the escape `\ud800`: valid JSON, not encodable text

KILLERS: list[tuple[str, object, tuple[str, str]]] = [
    ("json_1000_deep", '{"graph_id": "{graph}", "node_id": "n1", "config": ' + nested(1000) + "}", ("dead", "data is nested more than 100 levels deep")),
    ("config_600_deep", '{"graph_id": "{graph}", "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"x": ' + nested(600) + "}}}",
     ("failed", "malformed work item: data is nested more than 100 levels deep")),
    ("config_not_encodable", calc_envelope(note=LONE_SURROGATE),
     ("failed", "work item not started: PydanticSerializationError: Error serializing to JSON: UnicodeEncodeError")),
    ("graph_id_not_encodable", {"graph_id": "g" + LONE_SURROGATE, "node_id": "n1", "config": {}},
     ("dead", "work item: graph_id: Input should be a valid string, unable to parse raw data as a unicode string")),
    ("model_name_100kb", envelope({"llm_config": {"model": "m" * 100_000, "prompt": "hi"}}),
     ("failed", "node config: llm_config.model: String should have at most 256 characters")),
    ("llm_config_not_object_with_type", envelope({"type": "llm", "llm_config": "echo-x"}),
     ("failed", "node config: llm_config required for llm mode")),
]


@pytest.mark.parametrize(("doc", "expected"), [(d, e) for _, d, e in KILLERS], ids=[c for c, _, _ in KILLERS])
def test_entry_that_used_to_kill_the_ingress_is_reported_and_the_ingress_goes_on(stack: Stack, doc: object, expected: tuple[str, str]) -> None:
    graph = f"bad-{uuid.uuid4().hex[:10]}"
    entry_id = stack.redis.xadd(WORK, {"data": materialise(doc, graph)})
    kind, text = expected
    if kind == "failed":
        event = stack.wait_event(graph, "n1", timeout=60)
        assert event["type"] == "node.failed"
        assert event["data"]["error"].startswith(text), event["data"]["error"][:500]
    else:
        [dead] = wait_until(lambda: [d for d in stack.dead_letters() if d["entry_id"] == entry_id], timeout=60, message="dead letter")
        assert dead["reason"].startswith(text), dead["reason"][:500]
    wait_until(lambda: stack.pending() == 0, message="entry acked")
    assert_ingress_still_serves(stack)


def test_field_names_and_values_that_are_not_utf8(stack: Stack) -> None:
    """Only `data` matters: an entry without it is dead-lettered naming its fields readably; other
    fields, whatever their bytes, do not stop the node."""
    entry_id = stack.redis.xadd(WORK, {b"\xff\xfename": b"\xfa\xfb"})
    [dead] = wait_until(lambda: [d for d in stack.dead_letters() if d["entry_id"] == entry_id], message="dead letter")
    assert dead["reason"] == "entry has no 'data' field (fields: \\xff\\xfename)"
    graph = f"bad-{uuid.uuid4().hex[:10]}"
    stack.redis.xadd(WORK, {"data": json.dumps(calc_envelope()).replace(G, graph), b"\xc3\x28": b"\xff\xfe"})
    event = stack.wait_event(graph, "n1", timeout=60)
    assert event["type"] == "node.completed" and event["data"]["output"] == 2
    wait_until(lambda: stack.pending() == 0, message="entries acked")
    assert_ingress_still_serves(stack)


def test_ten_megabyte_entry_is_dead_lettered_without_copying_it(stack: Stack) -> None:
    graph = f"bad-{uuid.uuid4().hex[:10]}"
    doc = json.dumps(calc_envelope(pad="x" * 10_000_000)).replace(G, graph)
    entry_id = stack.redis.xadd(WORK, {"data": doc})
    [dead] = wait_until(lambda: [d for d in stack.dead_letters() if d["entry_id"] == entry_id], timeout=60, message="dead letter")
    assert dead["reason"] == f"entry too large: {len(doc)} bytes (limit 1048576)"
    assert dead["truncated"] == "true" and len(dead["data"]) < 100_000  # a prefix to identify it, not 10 MB
    assert json.loads(stack.redis.xrange(WORK, entry_id, entry_id)[0][1]["data"]) is not None  # the original stays on its stream
    wait_until(lambda: stack.pending() == 0, message="entry acked")
    assert_ingress_still_serves(stack)


def test_colons_in_graph_and_node_ids_do_not_share_a_workflow(stack: Stack) -> None:
    """`a:b`/`c` and `a`/`b:c` with the same envelope id are two work items, two results; ids
    without `:` or `%` keep their workflow ids; logs still carry the real graph and node ids."""
    base, event_id = f"g-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    pairs = [(f"{base}:b", "c"), (base, "b:c"), (f"{base}%", "n")]
    for graph, node in pairs:
        stack.submit({"id": event_id, "graph_id": graph, "node_id": node, "config": {"tool_name": "calculate", "tool_params": {"expression": "2*3"}}})
    found = {pair: stack.wait_event(*pair, timeout=60) for pair in pairs}
    assert {pair: e["type"] for pair, e in found.items()} == dict.fromkeys(pairs, "node.completed")
    assert [found[p]["data"]["workflow_id"] for p in pairs] == [
        f"node:{base}%3Ab:c:{event_id}", f"node:{base}:b%3Ac:{event_id}", f"node:{base}%25:n:{event_id}",
    ]
    time.sleep(1)
    assert all(len(stack.events(*pair)) == 1 for pair in pairs)
    wid = found[pairs[0]]["data"]["workflow_id"]

    def worker_lines() -> list[dict]:
        with open(stack.log.name, errors="replace") as log:
            lines = [line.removeprefix("[worker] ") for line in log if line.startswith("[worker] {") and wid in line]
        return [parsed for parsed in map(json.loads, lines) if parsed.get("workflow_id") == wid]

    lines = wait_until(worker_lines, message="worker log lines of the workflow")
    assert {(line.get("graph_id"), line.get("node_id")) for line in lines} == {(f"{base}:b", "c")}


def test_template_expanding_past_the_cap_fails_the_node_while_rendering(stack: Stack) -> None:
    """A 120 KB prompt whose placeholders would expand to 80 MB fails naming the cap."""
    graph = f"bad-{uuid.uuid4().hex[:10]}"
    stack.redis.set(f"dago:state:{graph}", json.dumps({"inputs": {"big": "y" * 4_700}}), ex=600)
    prompt = "{{big}}" * 17_000  # 119 KB
    stack.submit({"graph_id": graph, "node_id": "n1", "config": {"llm_config": {"model": "echo-x", "prompt": prompt}}})
    event = stack.wait_event(graph, "n1", timeout=60)
    assert event["type"] == "node.failed"
    assert event["data"]["error"] == "templates render to more than 1048576 bytes (MAX_RENDERED_BYTES)"
    assert stack.procs["worker"].alive()
    assert_ingress_still_serves(stack)


def test_static_summary_of_a_node_is_bounded(stack: Stack) -> None:
    """The Temporal UI's summary line stays short whatever the work item carries."""
    graph, event_id = f"g-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    stack.submit({"id": event_id, "graph_id": graph, "node_id": "n1", "config": {"llm_config": {"model": "m" * 5_000, "prompt": "hi"}}})
    event = stack.wait_event(graph, "n1", timeout=60)
    assert event["type"] == "node.failed"  # the model name is over the contract's limit

    async def summary(client) -> str | None:
        return await (await client.get_workflow_handle(f"node:{graph}:n1:{event_id}").describe()).static_summary()

    text = stack.temporal(summary)
    assert text is not None and text.startswith(f"graph {graph} · node n1 · mode llm · model mmm") and len(text) <= 400, len(text or "")


def test_worker_and_ingress_unharmed_after_bad_input(stack: Stack) -> None:
    assert stack.procs["worker"].alive() and stack.procs["ingress"].alive()
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "40+2"}})
    assert stack.wait_event(graph, node)["data"]["output"] == 42
