"""Record workflow histories from real runs into tests/histories/ for the replay tests.

    .venv/bin/python -m tests.support.record_histories

Run it when a deliberate, versioned change of NodeWorkflow makes new histories worth keeping
(old ones stay: running workflows of the old shape must still replay).
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

from doubles.scripted_llm import ScriptedLLM, text, tool_use
from core.step_io import ApprovalDecision
from tests.support.stack import ROOT, run_stack, wait_until

OUT = ROOT / "tests" / "histories"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with ScriptedLLM() as llm, tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stack.log", "w") as log:
        for stack in run_stack(Path(tmp), log, llm, CONTINUE_AS_NEW_EVENTS="60"):
            cases: dict[str, tuple[str, str]] = {}
            cases["tool_calculate"] = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "2*(3+4)"}})
            cases["tool_mcp_error"] = stack.submit_node({"tool_name": "fail", "tool_params": {"message": "nope"}})
            llm.script("rec-llm", text("a summary"))
            cases["llm"] = stack.submit_node({"llm_config": {"model": "rec-llm", "prompt": "summarise"}})
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
                    path = OUT / f"{name}.run{n}.json"
                    path.write_text(json.dumps({"workflow_id": workflow_id, "history": json.loads(history)}, indent=1))
                    print("recorded", path.relative_to(ROOT))
            gate.unlink()
            cancel_gate.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
