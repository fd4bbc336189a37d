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
        self.llm_cost = m.create_counter(p + "llm_cost_microusd", "estimated LLM cost by provider and model (USD / 1e6)")
        self.tool_calls = m.create_counter(p + "tool_calls", "tool calls by tool, server and outcome")
        self.tool_latency = m.create_histogram_timedelta(p + "tool_latency", "tool call latency by tool and server", "ms")
        self.step_errors = m.create_counter(p + "step_errors", "failed step attempts by step and error class (retries)")

    def llm(
        self, model: str, outcome: str, elapsed: float, input_tokens: int = 0, output_tokens: int = 0, *,
        provider: str = "anthropic", cache_read: int = 0, cache_creation: int = 0, cost_usd: float | None = None,
    ) -> None:
        """One LLM call. Tokens by direction (`input`, `output`, `cache_read`, `cache_creation`);
        the estimated cost in micro-dollars (counters are integers), when the model has a price."""
        labels = {"model": model, "provider": provider}
        self.llm_calls.add(1, {**labels, "outcome": outcome})
        self.llm_latency.record(timedelta(seconds=elapsed), labels)
        for direction, count in (("input", input_tokens), ("output", output_tokens), ("cache_read", cache_read), ("cache_creation", cache_creation)):
            if count:
                self.llm_tokens.add(count, {**labels, "direction": direction})
        if cost_usd:
            self.llm_cost.add(round(cost_usd * 1_000_000), labels)

    def tool(self, tool: str, server: str, outcome: str, elapsed: float) -> None:
        self.tool_calls.add(1, {"tool": tool, "server": server, "outcome": outcome})
        self.tool_latency.record(timedelta(seconds=elapsed), {"tool": tool, "server": server})

    def error(self, step: str, error_class: str) -> None:
        self.step_errors.add(1, {"step": step, "error": error_class})
