"""Pure logic behind the ingress's robustness: entry parsing limits, workflow ids, summaries,
dead-letter records and the template size cap. The behaviour through the real processes is
proved in tests/test_bad_input.py, tests/test_ingress.py and tests/test_ingress_outages.py."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from temporalio.common import TypedSearchAttributes

from activities.resolve import render
from adapters.settings import Settings
from core import search_attributes as sa
from core.errors import ContractError
from core.work_item import MalformedEntry, WorkItem, parse_work_entry
from core.node_config import ToolNode, node_summary, parse_node_config
from adapters.logs import TemporalContext
from core.templates import Renderer, RenderTooLarge, Variables
from ingress.consumer import Ingress, _Entry
from ingress.dead_letters import cause, dead_letter_record


def parse(fields: dict, max_bytes: int = 100_000) -> WorkItem:
    return parse_work_entry(fields, stream="executor.work", entry_id="1-0", max_bytes=max_bytes)


def doc(config: object, **extra: object) -> bytes:
    return json.dumps({"graph_id": "g", "node_id": "n", "config": config, **extra}).encode()


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# -- workflow ids ------------------------------------------------------------------------------


def item(graph: str, node: str, event_id: str | None = "e") -> WorkItem:
    return WorkItem(graph_id=graph, node_id=node, envelope="executor", event_id=event_id, stream="dago:events:executor.work", entry_id="1-0")


def test_workflow_ids_escape_colon_and_percent_inside_the_ids_only() -> None:
    assert item("a:b", "c").workflow_id == "node:a%3Ab:c:e"
    assert item("a", "b:c").workflow_id == "node:a:b%3Ac:e"
    assert item("50%", "n").workflow_id == "node:50%25:n:e"
    assert item("%3A", "n").workflow_id != item(":", "n").workflow_id
    # ids without `:` or `%` keep today's workflow ids exactly (running workflows, recorded histories)
    assert item("g-1", "n_1").workflow_id == "node:g-1:n_1:e"
    assert item("g", "n", None).workflow_id == "node:g:n:dago:events:executor.work@1-0"


@pytest.mark.parametrize(("graph", "node"), [("a:b", "c"), ("a", "b:c"), ("50%", "%3A"), ("plain", "ids")])
def test_log_lines_carry_the_real_ids_of_an_escaped_workflow_id(graph: str, node: str) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.workflow_id = item(graph, node, "ev:with:colons").workflow_id
    TemporalContext().filter(record)
    assert (record.graph_id, record.node_id) == (graph, node)


# -- entries -----------------------------------------------------------------------------------


def test_field_names_that_are_not_utf8_are_named_readably_and_otherwise_ignored() -> None:
    with pytest.raises(MalformedEntry) as err:
        parse({b"\xff\xfe": b"\xfa"})
    assert err.value.reason == "entry has no 'data' field (fields: \\xff\\xfe)"
    assert parse({b"data": doc({"tool_name": "t"}), b"\xc3\x28": b"\xff"}).graph_id == "g"


def test_entry_size_counts_every_field() -> None:
    with pytest.raises(MalformedEntry) as err:
        parse({b"data": doc({"tool_name": "t"}), b"pad": b"x" * 2000}, max_bytes=1024)
    assert err.value.reason.startswith("entry too large: 20") and err.value.reason.endswith("bytes (limit 1024)")


@pytest.mark.parametrize(("depth", "ids"), [(150, ("g", "n")), (100_000, (None, None))], ids=["parses", "beyond_the_json_parser"])
def test_nesting_past_the_limit_is_malformed(depth: int, ids: tuple) -> None:
    deep = b"[" * depth + b"]" * depth
    raw = doc({"tool_name": "t", "tool_params": {"x": "PLACEHOLDER"}}).replace(b'"PLACEHOLDER"', deep)
    with pytest.raises(MalformedEntry) as err:
        parse({b"data": raw}, max_bytes=10**6)
    assert err.value.reason == "data is nested more than 100 levels deep"
    assert (err.value.graph_id, err.value.node_id) == ids


def test_nesting_up_to_the_limit_is_fine() -> None:
    # document (1) > config (2) > tool_params (3) > x: 97 lists = 100 levels
    parsed = parse({b"data": doc({"tool_name": "t", "tool_params": {"x": nested(97)}})})
    assert parsed.config is not None


def test_ids_that_are_not_encodable_text_are_not_recovered() -> None:
    """JSON's `\\ud800` escape parses into a lone surrogate, which no event can carry."""
    with pytest.raises(MalformedEntry) as err:
        parse({b"data": doc({}, graph_id="g\ud800")})
    assert err.value.reason == "work item: graph_id: Input should be a valid string, unable to parse raw data as a unicode string"
    assert (err.value.graph_id, err.value.node_id) == (None, "n")


def test_node_config_nested_too_deep() -> None:
    """A config from the graph state never went through the entry's check."""
    with pytest.raises(ContractError) as err:
        parse_node_config({"tool_name": "t", "tool_params": {"x": nested(120)}})
    assert str(err.value) == "node config: nested more than 100 levels deep"


def test_rendered_tool_params_nested_too_deep() -> None:
    """A typed `{{name}}` brings its value in whole: the rendered parameters are measured again."""
    node = ToolNode(tool_name="t", tool_params={"x": "{{deep}}"})
    with pytest.raises(ContractError) as err:
        render(node, Renderer(Variables({"deep": nested(150)}, {})))
    assert str(err.value) == "node config: tool_params nested more than 100 levels deep once rendered"
    assert render(node, Renderer(Variables({"deep": nested(50)}, {}))).tool_params == {"x": nested(50)}


def test_model_name_is_capped() -> None:
    assert parse_node_config({"llm_config": {"prompt": "p", "model": "m" * 256}}).llm_config.model == "m" * 256
    with pytest.raises(ContractError) as err:
        parse_node_config({"llm_config": {"prompt": "p", "model": "m" * 257}})
    assert str(err.value) == "node config: llm_config.model: String should have at most 256 characters"


# -- summaries, reasons, dead-letter records ---------------------------------------------------


def test_node_summary_is_bounded() -> None:
    assert node_summary("g", "n", "llm", "m") == "graph g · node n · mode llm · model m"
    long = node_summary("g" * 5000, "n" * 5000, "llm", "m" * 5000)
    assert len(long) <= 400 and long.startswith("graph ggg") and long.endswith("…")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"type": "llm", "llm_config": "not an object"}, "graph g · node n · mode llm · model default-model"),
        ({"llm_config": {"model": ["x"], "prompt": "p"}}, "graph g · node n · mode llm · model default-model"),
        ({"type": ["agent"], "tool_name": "t"}, "graph g · node n"),
        ({"tool_name": "t"}, "graph g · node n · mode tool"),
    ],
)
def test_ingress_summary_of_odd_configs(config: dict, expected: str) -> None:
    ingress = Ingress(None, None, Settings(llm_model="default-model"))  # type: ignore[arg-type]
    work = WorkItem(graph_id="g", node_id="n", envelope="executor", stream="s", entry_id="1-0", config=config)
    assert ingress.summary(work) == expected


def test_cause_names_the_type_and_stays_printable_and_short() -> None:
    assert cause(ValueError("bad")) == "ValueError: bad"
    long = cause(RuntimeError("x\ud800" * 5000))
    assert len(long) <= 1000 and long.startswith("RuntimeError: x\\ud800")
    long.encode()  # no lone surrogate left


def test_dead_letter_record_keeps_fields_readable_and_ours_last() -> None:
    entry = _Entry("executor.work", "1-0", {b"\xff": b"\xfe", b"data": b"{}", b"reason": b"forged"}, deliveries=2)
    record = dead_letter_record(entry, "why", consumer="c", at=datetime(2026, 1, 1, tzinfo=UTC), max_entry_bytes=1024)
    assert record["\\xff"] == b"\xfe" and record["data"] == b"{}"
    assert (record["reason"], record["stream"], record["entry_id"], record["deliveries"]) == ("why", "executor.work", "1-0", "2")
    assert "truncated" not in record


def test_dead_letter_record_of_an_oversized_entry_keeps_a_prefix() -> None:
    entry = _Entry("executor.work", "1-0", {b"data": b"x" * 50_000})
    record = dead_letter_record(entry, "too large", consumer="c", at=datetime(2026, 1, 1, tzinfo=UTC), max_entry_bytes=1024)
    assert record["data"] == b"x" * 4096 and record["truncated"] == "true"


# -- template size cap -------------------------------------------------------------------------


class CountingVariables(Variables):
    def __init__(self, inputs: dict) -> None:
        super().__init__(inputs, {})
        self.lookups = 0

    def get(self, name: str) -> object:
        self.lookups += 1
        return super().get(name)


def test_rendering_stops_at_the_cap_not_after_building_the_text() -> None:
    names = [f"v{i}" for i in range(1000)]
    variables = CountingVariables({name: "y" * 10_000 for name in names})
    renderer = Renderer(variables, max_bytes=100_000)
    with pytest.raises(RenderTooLarge) as err:
        renderer.text("".join(f"{{{{{name}}}}}" for name in names))  # would be 10 MB
    assert str(err.value) == "templates render to more than 100000 bytes (MAX_RENDERED_BYTES)"
    assert variables.lookups <= 11


def test_the_cap_counts_utf8_bytes_across_every_rendered_field() -> None:
    renderer = Renderer(Variables({"a": "é" * 400}, {}), max_bytes=2000)
    assert renderer.text("{{a}}") == "é" * 400  # 800 bytes
    assert renderer.text("{{a}}") == "é" * 400  # 1600 bytes
    with pytest.raises(RenderTooLarge):
        renderer.text("{{a}}")  # 2400 bytes in all


def test_typed_values_count_toward_the_cap() -> None:
    renderer = Renderer(Variables({"big": list(range(2000))}, {}), max_bytes=50_000)
    with pytest.raises(RenderTooLarge):
        renderer.value({"items": ["{{big}}"] * 100})


def test_a_variable_too_deep_to_write_as_json_fails_clearly() -> None:
    renderer = Renderer(Variables({"deep": nested(5000)}, {}), max_bytes=10**6)
    with pytest.raises(ContractError) as err:
        renderer.text("{{deep}}")
    assert str(err.value) == "template variable deep is nested too deeply"


def test_rendering_under_the_cap_is_unchanged() -> None:
    renderer = Renderer(Variables({"who": "world", "n": 3}, {}), max_bytes=1024)
    assert renderer.text("Hi {{who}} x{{ n }}") == "Hi world x3"
    assert renderer.value({"k": "{{n}}", "s": "{{who}}!"}) == {"k": 3, "s": "world!"}


# -- search attributes at start (core/search_attributes.py) ------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, (None, None)),
        ({"tool_name": "t"}, ("tool", None)),
        ({"llm_config": {"prompt": "p"}}, ("llm", "default-model")),
        ({"llm_config": {"model": "m"}, "tools": ["t"]}, ("agent", "m")),
        ({"llm_config": {"provider": "openai", "model": "gpt"}, "tools": ["t"]}, ("agent", "openai:gpt")),
        ({"llm_config": {"provider": "openai", "prompt": "p"}}, ("llm", None)),  # LLM_MODEL is the default provider's
        ({"llm_config": {"provider": "elsewhere", "model": "m", "prompt": "p"}}, ("llm", None)),
        ({"type": "nonsense"}, (None, None)),
    ],
)
def test_labels_the_ingress_knows_before_resolving(config: dict | None, expected: tuple) -> None:
    assert sa.labels(config, "default-model") == expected


def test_at_start_sets_what_is_known_and_leaves_out_what_the_server_would_refuse() -> None:
    attrs = sa.at_start("g", "n", "agent", "m")
    assert {p.key.name: p.value for p in attrs} == {"DagoGraphId": "g", "DagoNodeId": "n", "DagoMode": "agent", "DagoModel": "m"}
    assert {p.key.name for p in sa.at_start("g", "n")} == {"DagoGraphId", "DagoNodeId"}
    too_long = "é" * 600  # 1,200 bytes: over MAX_VALUE_BYTES
    assert {p.key.name for p in sa.at_start(too_long, "n", "llm", too_long)} == {"DagoNodeId", "DagoMode"}


def test_still_to_set_upserts_only_what_differs() -> None:
    have = sa.at_start("g", "n", "agent", "ingress-default")
    assert sa.still_to_set(have, "g", "n", "agent", "ingress-default") == []
    assert [u.key.name for u in sa.still_to_set(have, "g", "n", "agent", "worker-default")] == ["DagoModel"]
    # a run started without them (histories from before): all of them, in the order they always had
    assert [(u.key.name, u.value) for u in sa.still_to_set(TypedSearchAttributes.empty, "g", "n", "tool", None)] == [
        ("DagoGraphId", "g"), ("DagoNodeId", "n"), ("DagoMode", "tool"),
    ]
