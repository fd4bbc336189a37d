"""Our metrics, recorded through the Temporal runtime's meter so they are served by the same
Prometheus endpoint as the SDK's own (`temporal_*` worker and client metrics).

Names: `dago_executor_*`. Labels stay low-cardinality (model, tool, server, outcome, error class);
never graph or node ids.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import MetricMeter


class Metrics:
    def __init__(self, meter: MetricMeter | None = None):
        m = meter or MetricMeter.noop
        p = "dago_executor_"
        self.entries_read = m.create_counter(p + "ingress_entries_read", "work entries read from the streams")
        self.workflows_started = m.create_counter(p + "ingress_workflows_started", "node workflows started")
        self.duplicates = m.create_counter(p + "ingress_duplicates_skipped", "deliveries of work items already started")
        self.dead_lettered = m.create_counter(p + "ingress_dead_lettered", "entries moved to the dead-letter stream")
        self.start_failures = m.create_counter(p + "ingress_start_failures", "workflow starts that failed and will be retried")
        self.stream_lag = m.create_gauge(p + "stream_lag", "entries not yet delivered to the consumer group")
        self.stream_pending = m.create_gauge(p + "stream_pending", "entries delivered but not acknowledged")
        self.results = m.create_counter(p + "results_emitted", "result events written, by outcome")
        self.llm_calls = m.create_counter(p + "llm_calls", "LLM calls by model and outcome")
        self.llm_tokens = m.create_counter(p + "llm_tokens", "LLM tokens by model and direction")
        self.llm_latency = m.create_histogram_timedelta(p + "llm_latency", "LLM call latency by model", "ms")
        self.tool_calls = m.create_counter(p + "tool_calls", "tool calls by tool, server and outcome")
        self.tool_latency = m.create_histogram_timedelta(p + "tool_latency", "tool call latency by tool and server", "ms")
        self.step_errors = m.create_counter(p + "step_errors", "failed step attempts by step and error class (retries)")

    def llm(self, model: str, outcome: str, elapsed: float, input_tokens: int = 0, output_tokens: int = 0) -> None:
        self.llm_calls.add(1, {"model": model, "outcome": outcome})
        self.llm_latency.record(timedelta(seconds=elapsed), {"model": model})
        if input_tokens:
            self.llm_tokens.add(input_tokens, {"model": model, "direction": "input"})
        if output_tokens:
            self.llm_tokens.add(output_tokens, {"model": model, "direction": "output"})

    def tool(self, tool: str, server: str, outcome: str, elapsed: float) -> None:
        self.tool_calls.add(1, {"tool": tool, "server": server, "outcome": outcome})
        self.tool_latency.record(timedelta(seconds=elapsed), {"tool": tool, "server": server})

    def error(self, step: str, error_class: str) -> None:
        self.step_errors.add(1, {"step": step, "error": error_class})
