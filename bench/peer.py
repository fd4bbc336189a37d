"""The peer row: the same agent task run by pydantic-ai's Temporal integration (the `bench` extra).

An `Agent` with the `TemporalDurability` capability (pydantic-ai-slim 2.68), its Anthropic model
(`AnthropicModel` + `AnthropicProvider(base_url=...)`) pointed at the bench's scripted Messages-API
server (bench/llm_server.py), so it gets exactly the replies our agent node gets: with the model
`bench-agent-k<K>`, a `calculate` tool_use for the first K-1 turns, then text. Its tool is a plain
Python function calling the same `calculate` as ours. `PeerAgent` is the workflow that runs it;
its worker (`python -m bench.peer worker`) is a separate process like ours, registered through
`PydanticAIPlugin` (which reads `__pydantic_ai_agents__`, adds the agent's activities and its
payload converter, and passes pydantic-ai through the sandbox), with the same activity slots and
cache size as our worker as shipped (2000 / 2000), so neither side queues on a setting.

What the peer does not do, and ours does: read the node from graph state (resolve), describe the
tools, emit an exactly-once result event on a Redis stream, search attributes, claim-checks.
The client starts it by name with a plain string, so no plugin is needed on the bench's side.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import Agent
    from pydantic_ai import __version__ as VERSION  # noqa: F401  (the peer row's label, bench/peer_phase.py)
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin, PydanticAIWorkflow, TemporalDurability
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    from activities.calculate import calculate as evaluate

WORKFLOW = "PeerAgent"
LLM_URL_ENV = "BENCH_PEER_LLM_URL"  # the worker's scripted LLM server
MODEL_ENV = "BENCH_PEER_MODEL"  # bench-agent-k<K>: K model calls, K-1 tool calls


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression (numbers, + - * / // % ** and parentheses)."""
    return str(evaluate(expression))


def build_agent() -> Agent[None, str]:
    """Built once per process, outside the sandbox (imports passed through above)."""
    provider = AnthropicProvider(base_url=os.environ.get(LLM_URL_ENV, "http://127.0.0.1:9"), api_key="bench-key")
    model = AnthropicModel(os.environ.get(MODEL_ENV, "bench-agent-k2"), provider=provider)
    return Agent(
        model,
        name="peer",
        tools=[calculate],
        model_settings={"max_tokens": 256},
        capabilities=[TemporalDurability(activity_config=workflow.ActivityConfig(start_to_close_timeout=timedelta(seconds=60)))],
    )


AGENT = build_agent()


@workflow.defn(name=WORKFLOW)
class PeerAgent(PydanticAIWorkflow):
    __pydantic_ai_agents__ = [AGENT]

    @workflow.run
    async def run(self, task: str) -> str:
        result = await AGENT.run(task)
        return result.output


async def serve(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address, plugins=[PydanticAIPlugin()])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[PeerAgent], max_concurrent_activities=2000, max_cached_workflows=2000):
        print(f"peer worker polling {task_queue}", flush=True)
        await stop.wait()


def main() -> None:
    from bench.baseline import worker_main  # here, not at the top: the sandbox re-imports this module

    worker_main(serve)


if __name__ == "__main__":
    main()
