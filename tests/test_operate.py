"""Health, readiness and metrics of real worker and ingress processes."""

from __future__ import annotations

import json
import uuid

from executor.scripted_llm import text
from tests.support.stack import Stack, wait_until


def test_health_and_readiness_of_worker_and_ingress(stack: Stack) -> None:
    for service in ("worker", "ingress"):
        status, body = wait_until(lambda s=service: (r := stack.http_get(s, "/ready"))[0] == 200 and r, message=f"{service} ready")
        checks = json.loads(body)["checks"]
        assert set(checks) >= {"temporal", "redis"} and set(checks.values()) == {"ok"}
        assert stack.http_get(service, "/health") == (200, '{"status": "alive"}')


def test_metrics_endpoint_reports_a_real_run(stack: Stack, llm) -> None:
    model = f"claude-metrics-{uuid.uuid4().hex[:6]}"
    llm.script(model, text("counted", usage=(11, 4)))
    graph, node = stack.submit_node({"llm_config": {"model": model, "prompt": "hi"}})
    stack.wait_event(graph, node)
    g2, n2 = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "1/0"}})
    stack.wait_event(g2, n2)

    def worker_metrics() -> str:
        status, body = stack.http_get("worker", "/metrics")
        return body if status == 200 and f'model="{model}"' in body else ""

    body = wait_until(worker_metrics, message="worker metrics with the model")
    lines = body.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert value(f'dago_executor_llm_calls{{') >= 1
    assert any(line.startswith("dago_executor_llm_tokens") and f'model="{model}"' in line and 'direction="input"' in line and line.endswith(" 11") for line in lines)
    assert any(line.startswith("dago_executor_results_emitted") and 'outcome="failed"' in line for line in lines)
    assert any(line.startswith("dago_executor_tool_calls") and 'tool="calculate"' in line for line in lines)
    assert any(line.startswith("temporal_") for line in lines)  # the SDK's own metrics, same endpoint

    def ingress_metrics() -> str:
        status, body = stack.http_get("ingress", "/metrics")
        return body if status == 200 and "dago_executor_ingress_workflows_started" in body else ""

    ingress = wait_until(ingress_metrics, message="ingress metrics").splitlines()
    started = sum(float(line.rsplit(" ", 1)[1]) for line in ingress if line.startswith("dago_executor_ingress_workflows_started"))
    assert started >= 2
    assert any(line.startswith("dago_executor_stream_pending") for line in ingress)
