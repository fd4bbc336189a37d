"""Record workflow histories from real runs, for the replay tests (tests/test_replay.py).

    .venv/bin/python -m tests.support.record_histories --release <checkout>   # or: make histories RELEASE=<checkout>

records, with the worker and ingress of the checkout's code (a released version, unpacked or
`git worktree add`ed), one history per case into tests/histories/release-<its version>/, plus
claim-checks.jsonl: the claim-checked payloads those histories reference (the Redis blobs the
replay needs to decode them; tests/test_replay.py loads them into a real Redis). Run it at each
release, so the corpus holds the histories every version still running in production wrote.
Without `--release`, the current tree records into tests/histories/ (the older corpus).
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from doubles.scripted_llm import ScriptedLLM, text, tool_use
from core.step_io import ApprovalDecision
from tests.support.stack import ROOT, Stack, wait_until

OUT = ROOT / "tests" / "histories"
CLAIM_CHECKS = "claim-checks.jsonl"
CLAIM_CHECK_ENCODING = base64.b64encode(b"json/claim-check").decode()
# A low threshold, so the corpus holds claim-checked payloads and their store stays small.
CLAIM_CHECK_BYTES = 8192
BIG_PROMPT_BYTES = 12_000  # above CLAIM_CHECK_BYTES: this node's input and its LLM request are claim-checked


def release_version(checkout: Path) -> str:
    return tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["version"]


def check_runs_from(checkout: Path) -> None:
    """The services must import the checkout's code, not the editable install of this tree."""
    found = subprocess.run(
        [sys.executable, "-c", "import workflows.node; print(workflows.node.__file__)"],
        cwd=checkout, capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(checkout.resolve()):
        raise SystemExit(f"the services would run {found}, not the code of {checkout}")
    print("services run", found)


def claim_check_keys(node: Any) -> Iterator[str]:
    """The Redis keys of the claim-checked payloads in a history (its JSON form)."""
    if isinstance(node, dict):
        if (node.get("metadata") or {}).get("encoding") == CLAIM_CHECK_ENCODING:
            yield json.loads(base64.b64decode(node["data"]))["claim_check"]
        for value in node.values():
            yield from claim_check_keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from claim_check_keys(value)


def run_recording_stack(tmp: Path, log: Any, llm: ScriptedLLM, code_root: Path, **extra_env: str) -> Iterator[Stack]:
    stack = Stack(tmp=tmp, log=log, llm=llm, extra_env=extra_env, code_root=code_root)
    try:
        stack.start_infra()
        stack.start_service("worker")
        stack.start_service("ingress")
        yield stack
    finally:
        stack.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, help="checkout of the released code to record (default: this tree)")
    parser.add_argument("--out", type=Path, help="folder (default: tests/histories/release-<version>, or tests/histories)")
    args = parser.parse_args(argv)
    code_root = (args.release or ROOT).resolve()
    out = args.out or (OUT / f"release-{release_version(code_root)}" if args.release else OUT)
    check_runs_from(code_root)
    record(code_root, out)
    return 0


def record(code_root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, str] = {}
    with ScriptedLLM() as llm, tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stack.log", "w") as log:
        for stack in run_recording_stack(
            Path(tmp), log, llm, code_root, CONTINUE_AS_NEW_EVENTS="60", CLAIM_CHECK_BYTES=str(CLAIM_CHECK_BYTES)
        ):
            cases: dict[str, tuple[str, str]] = {}
            cases["tool_calculate"] = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "2*(3+4)"}})
            cases["tool_mcp_error"] = stack.submit_node({"tool_name": "fail", "tool_params": {"message": "nope"}})
            llm.script("rec-llm", text("a summary"))
            cases["llm"] = stack.submit_node({"llm_config": {"model": "rec-llm", "prompt": "summarise"}})
            llm.script("rec-big", text("a summary of a long text"))
            big_prompt = "lorem ipsum " * (BIG_PROMPT_BYTES // 12)
            cases["llm_claim_checked"] = stack.submit_node({"llm_config": {"model": "rec-big", "prompt": big_prompt}})
            cases["config_error"] = stack.submit_node({"llm_config": {"prompt": "{{missing}}"}})
            llm.script("rec-agent", tool_use(("calculate", {"expression": "6*7"}), ("get_weather", {"city": "Oslo"})), tool_use(("fail", {"message": "x"})), text("42"))
            cases["agent_parallel_tools"] = stack.submit_node({"llm_config": {"model": "rec-agent"}, "tools": ["calculate", "get_weather", "fail"]})
            llm.script("rec-long", *[tool_use(("calculate", {"expression": f"{i}+1"})) for i in range(8)], text("long done"))
            cases["agent_continue_as_new"] = stack.submit_node({"llm_config": {"model": "rec-long"}, "tools": ["calculate"], "max_iterations": 20})
            llm.script("rec-approve", tool_use(("echo", {"text": "hi"})), text("approved and done"))
            event_id = str(uuid.uuid4())
            cases["agent_approval"] = stack.submit_node({"llm_config": {"model": "rec-approve"}, "tools": ["echo"], "require_approval": ["echo"]}, id=event_id)
            wid = f"node:{cases['agent_approval'][0]}:n1:{event_id}"
            [waiting] = wait_until(lambda: stack.query(wid, "pending_approvals"))
            stack.temporal(lambda c: c.get_workflow_handle(wid).execute_update("decide", ApprovalDecision(call_id=waiting["call_id"], approve=True)))
            stack.start_service("ingress", "ingress-local", WORK_STREAMS="local.work", LOCAL_STEPS="true")
            for name, config in {
                "local_steps_tool": {"tool_name": "calculate", "tool_params": {"expression": "6*7"}},
                "local_steps_config_error": {"llm_config": {"prompt": "{{missing}}"}},
                "local_steps_agent": {"llm_config": {"model": "echo-local"}, "tools": ["calculate"], "task": "What is 2+2?"},
            }.items():
                graph = f"rec-{uuid.uuid4().hex[:8]}"
                stack.submit({"graph_id": graph, "node_id": "n1", "config": config}, stream="local.work")
                cases[name] = (graph, "n1")
            gate = stack.gate("record-deadline")
            cases["tool_deadline"] = stack.submit_node({"tool_name": "mcp__http__gate", "tool_params": {"name": gate.name}, "timeout": 1})
            cancel_gate = stack.gate("record-cancel")
            cancel_id = str(uuid.uuid4())
            cases["tool_cancelled"] = stack.submit_node({"tool_name": "mcp__http__gate", "tool_params": {"name": cancel_gate.name}}, id=cancel_id)
            wait_until(lambda: [c for c in stack.mcp_calls("gate_started") if c["name"] == cancel_gate.name])
            stack.temporal(lambda c: c.get_workflow_handle(f"node:{cases['tool_cancelled'][0]}:n1:{cancel_id}").cancel())
            for name, (graph, node) in cases.items():
                event = stack.wait_event(graph, node, timeout=60)
                workflow_id = event["data"]["workflow_id"]

                async def histories(client, workflow_id=workflow_id):  # noqa: ANN001, ANN202
                    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
                    return [(await client.get_workflow_handle(workflow_id, run_id=r.run_id).fetch_history()).to_json() for r in runs]

                for n, history in enumerate(stack.temporal(histories)):
                    path = out / f"{name}.run{n}.json"
                    doc = json.loads(history)
                    path.write_text(json.dumps({"workflow_id": workflow_id, "history": doc}, indent=1))
                    for key in claim_check_keys(doc):
                        blobs[key] = base64.b64encode(redis.Redis(port=stack.redis_port).get(key) or b"").decode()
                    print("recorded", path)
            gate.unlink()
            cancel_gate.unlink()
    if blobs:
        missing = [key for key, blob in blobs.items() if not blob]
        if missing:
            raise SystemExit(f"claim-checked payloads gone from Redis: {missing}")
        store = out / CLAIM_CHECKS
        store.write_text("".join(json.dumps({"key": key, "payload": blob}) + "\n" for key, blob in sorted(blobs.items())))
        print("stored", len(blobs), "claim-checked payloads in", store)


if __name__ == "__main__":
    sys.exit(main())
