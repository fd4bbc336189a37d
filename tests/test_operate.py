"""Health, readiness and metrics of real worker and ingress processes."""

from __future__ import annotations

import json
import uuid

from doubles.scripted_llm import text
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
    g1, n1 = stack.submit_node({"llm_config": {"prompt": "the worker's default model"}})  # LLM_MODEL: echo-default
    stack.wait_event(g1, n1)
    g2, n2 = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "1/0"}})
    stack.wait_event(g2, n2)

    def worker_metrics() -> str:
        status, body = stack.http_get("worker", "/metrics")
        return body if status == 200 and 'model="echo-default"' in body and 'model="other"' in body else ""

    body = wait_until(worker_metrics, message="worker metrics with both models")
    lines = body.splitlines()
    assert not any(model in line for line in lines)  # a model chosen by a work item is not a label...
    assert any(line.startswith("dago_executor_llm_tokens") and 'model="other"' in line and 'direction="input"' in line for line in lines)
    assert any(line.startswith("dago_executor_llm_calls") and 'model="echo-default"' in line and 'outcome="ok"' in line for line in lines)
    assert any(line.startswith("dago_executor_results_emitted") and 'outcome="failed"' in line for line in lines)
    assert any(line.startswith("dago_executor_tool_calls") and 'tool="calculate"' in line and 'server="builtin"' in line for line in lines)
    assert any(line.startswith("temporal_") for line in lines)  # the SDK's own metrics, same endpoint

    def ingress_metrics() -> str:
        status, body = stack.http_get("ingress", "/metrics")
        return body if status == 200 and "dago_executor_ingress_workflows_started" in body else ""

    ingress = wait_until(ingress_metrics, message="ingress metrics").splitlines()
    started = sum(float(line.rsplit(" ", 1)[1]) for line in ingress if line.startswith("dago_executor_ingress_workflows_started"))
    assert started >= 2
    assert any(line.startswith("dago_executor_stream_pending") for line in ingress)


def _log_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        _, _, rest = raw.partition("] ")
        if rest.startswith("{"):
            try:
                lines.append(json.loads(rest))
            except json.JSONDecodeError:
                pass
    return lines


def test_json_logs_carry_the_ids_operators_search_by(stack: Stack) -> None:
    from tests.conftest import STACK_LOG

    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": "3*3"}})
    wid = stack.wait_event(graph, node)["data"]["workflow_id"]

    def mine() -> list[dict]:
        return [line for line in _log_lines(STACK_LOG) if line.get("graph_id") == graph]

    lines = wait_until(lambda: len(mine()) >= 3 and mine(), message="log lines of the node")
    activity_lines = [line for line in lines if line.get("activity_type")]
    assert {line["activity_type"] for line in activity_lines} >= {"resolve_node", "emit_result"}
    for line in activity_lines:
        assert line["workflow_id"] == wid and line["node_id"] == node and line["attempt"] == 1
        assert line["level"] in ("info", "warning") and line["ts"] and line["logger"]
    assert any(line["logger"] == "ingress.consumer" and line["msg"].startswith("started") for line in lines)


def test_secrets_never_reach_history_results_or_logs(stack: Stack, llm) -> None:
    import hashlib

    from tests.conftest import STACK_LOG
    from tests.support.stack import API_KEY, MCP_ENV_SECRET, MCP_HEADER_SECRET

    model = f"claude-secret-{uuid.uuid4().hex[:6]}"
    from doubles.scripted_llm import tool_use

    llm.script(model, tool_use(("mcp__secured__whoami", {}), ("mcp__stdio__whoami", {})), text("checked"))
    graph, node, wid = stack.submit_agent({"llm_config": {"model": model}, "tools": ["mcp__secured__whoami", "mcp__stdio__whoami"]})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed"
    # The secrets were in use: the servers received them...
    calls = stack.mcp_calls("whoami")
    assert hashlib.sha256(f"Bearer {MCP_HEADER_SECRET}".encode()).hexdigest() in {c["auth_sha256"] for c in calls}
    assert hashlib.sha256(MCP_ENV_SECRET.encode()).hexdigest() in {c["token_sha256"] for c in calls}
    assert llm.requests(model)[0].headers.get("authorization") == f"Bearer {API_KEY}"
    # ...and appear nowhere else.
    history = stack.temporal(lambda c: c.get_workflow_handle(wid).fetch_history())
    # Payloads (inputs, results, summaries, failures) as the raw bytes the server stores: the
    # JSON form of a history base64-encodes them, where a plain search would miss a secret.
    raw_history = b"".join(e.SerializeToString() for e in history.events)
    assert b'"tool":"mcp__secured__whoami"' in raw_history  # the search does see inside payloads
    logs = STACK_LOG.read_text(errors="replace")
    for secret in (API_KEY, MCP_HEADER_SECRET, MCP_ENV_SECRET):
        assert secret.encode() not in raw_history
        assert secret not in json.dumps(event)
        assert secret not in logs


def test_opentelemetry_traces_follow_a_node_from_ingress_to_activities(stack: Stack) -> None:
    """A worker and an ingress with the standard OTel variables set export spans over OTLP/HTTP to
    a collector of ours; they run on their own stream and task queue beside the shared pair."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans: list[tuple[str, str]] = []  # (service.name, span name)

    class Collector(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
            for resource_spans in request.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name")
                spans.extend((service, s.name) for scope in resource_spans.scope_spans for s in scope.spans)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "WORK_STREAMS": "traced.work",
        "TEMPORAL_TASK_QUEUE": "traced-queue",
    }
    stack.start_service("worker", "worker-traced", **traced)
    stack.start_service("ingress", "ingress-traced", **traced)
    try:
        graph = f"g-{uuid.uuid4().hex[:8]}"
        stack.submit({"graph_id": graph, "node_id": "n1", "config": {"tool_name": "calculate", "tool_params": {"expression": "1+1"}}}, stream="traced.work")
        assert stack.wait_event(graph, "n1", timeout=60)["data"]["output"] == 2
        # Spans leave in batches, each when its span ends: wait for every one expected, not the first.
        expected = {"StartWorkflow:NodeWorkflow", "RunWorkflow:NodeWorkflow", "RunActivity:resolve_node", "RunActivity:call_tool", "RunActivity:emit_result"}
        wait_until(lambda: {n for _, n in spans} >= expected, timeout=60, message=f"spans {sorted(expected)}")
        assert ("dago-executor-ingress", "StartWorkflow:NodeWorkflow") in spans
        assert ("dago-executor-worker", "RunActivity:call_tool") in spans
    finally:
        for name in ("ingress-traced", "worker-traced"):
            stack.procs.pop(name).stop()
        server.shutdown()


def test_redis_password_is_used_and_required(tmp_path) -> None:
    """REDIS_PASS reaches a password-protected redis-server; without it, status says unreachable."""
    import subprocess
    import sys

    from executor.local_services import Proc, free_port, redis_binary, wait_for_port
    from tests.support.stack import ROOT

    port = free_port()
    with open(tmp_path / "redis.log", "w") as log:
        proc = Proc("redis-auth", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret-pass", "--save", ""], sink=log)
        try:
            wait_for_port(port, proc=proc)
            env = {"PATH": "/usr/bin:/bin", "REDIS_ADDR": f"127.0.0.1:{port}", "TEMPORAL_ADDRESS": "127.0.0.1:1"}

            def status(**extra: str) -> dict:
                done = subprocess.run([sys.executable, "-m", "executor", "status", "--json"], env={**env, **extra}, cwd=ROOT, capture_output=True, text=True, timeout=60)
                return json.loads(done.stdout)

            assert status(REDIS_PASS="s3cret-pass")["redis"] == "ok"
            assert "unreachable" in status()["redis"]
            assert "unreachable" in status(REDIS_PASS="wrong")["redis"]
        finally:
            proc.stop()
