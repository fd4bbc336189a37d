"""The same steps with no Temporal and no work stream: the activity methods called in-process.

The activity classes are constructed the way executor/worker.py constructs them (one Redis
client, one anthropic client with `max_retries=0`, an MCP pool), and called in the order
NodeWorkflow calls them: resolve → call_tool | call_llm | agent loop (call_llm, then its tool
calls in parallel) → emit. Parsing the envelope into a WorkItem is included (the ingress does
it); reading Redis for the graph state and the emit transaction are included (they are the
work). What is left out is exactly the durability: the stream hop, the workflow start, the
history, the task round trips.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from activities.emit import EmitActivities
from activities.llm import LlmActivities, build_providers
from activities.mcp_pool import McpPool
from adapters.mcp_config import configured_servers
from activities.resolve import ResolveActivities
from activities.tools import ToolActivities
from bench.workloads import envelope
from adapters import redis_client
from adapters.settings import Settings
from core.node_config import AgentNode, LlmNode, ToolNode
from core.result_event import NodeOutcome
from core.work_item import parse_work_entry
from core.step_io import LlmRequest, ToolCall, Usage

_entries = itertools.count(1)


class Direct:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.redis = redis_client.connect(settings)
        self.llm_client = build_providers(settings)
        self.pool = McpPool(configured_servers(settings.mcp_servers, settings.mcp_config), read_timeout=settings.tool_timeout)
        self.resolve = ResolveActivities(self.redis, settings, False)
        self.llm = LlmActivities(self.llm_client)
        self.tools = ToolActivities(self.pool, timeout=settings.tool_timeout)
        self.emit = EmitActivities(self.redis, settings)

    async def close(self) -> None:
        await self.pool.close()
        await self.llm_client.close()
        await self.redis.aclose()

    async def run(self, config: dict[str, Any]) -> NodeOutcome:
        doc = envelope(config)
        item = parse_work_entry(
            {b"data": json.dumps(doc).encode()},
            stream="bench.direct",
            entry_id=f"{int(time.time() * 1000)}-{next(_entries)}",
            max_bytes=self.settings.max_entry_bytes,
        )
        started = datetime.now(UTC)
        resolved = await self.resolve.resolve_node(item)
        node = resolved.node
        details: dict[str, Any] = {}
        if isinstance(node, ToolNode):
            result = await self.tools.call_tool(ToolCall(tool=node.tool_name, arguments=node.tool_params))
            output: Any = result.output
            details = {"tool": node.tool_name, "server": result.server}
        elif isinstance(node, LlmNode):
            cfg = node.llm_config
            reply = await self.llm.call_llm(
                LlmRequest(
                    model=resolved.model or "", system=cfg.system, messages=[{"role": "user", "content": node.prompt}],
                    temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                )
            )
            output = {"content": reply.text, "usage": reply.usage.model_dump()}
            details = {"model": reply.model, "stop_reason": reply.stop_reason}
        else:
            assert isinstance(node, AgentNode)
            output = await self._agent(node, resolved.model or "")
            details = {"model": resolved.model, "runs": 1}
        outcome = NodeOutcome(
            graph_id=item.graph_id, node_id=item.node_id, workflow_id=item.workflow_id, run_id="direct",
            status="completed", output=output, mode=node.mode, event_id=str(uuid.uuid4()),
            started_at=started, finished_at=datetime.now(UTC), details=details,
        )
        await self.emit.emit_result(outcome)
        return outcome

    async def _agent(self, node: AgentNode, model: str) -> dict[str, Any]:
        specs = await self.tools.describe_tools(node.tools)
        definitions = [{"name": s.name, "description": s.description, "input_schema": s.input_schema} for s in specs]
        messages: list[dict[str, Any]] = [{"role": "user", "content": node.task}]
        usage = Usage()
        for iteration in range(1, (node.max_iterations or 10) + 1):
            reply = await self.llm.call_llm(
                LlmRequest(
                    model=model, system=node.system, messages=messages, tools=definitions,
                    temperature=node.llm_config.temperature, max_tokens=node.llm_config.max_tokens,
                )
            )
            usage = usage + reply.usage
            messages.append({"role": "assistant", "content": reply.content})
            if not reply.tool_uses:
                return {"result": reply.text, "iterations": iteration, "usage": usage.model_dump(), "stop_reason": reply.stop_reason}
            results = await asyncio.gather(
                *(self.tools.call_tool(ToolCall(tool=b["name"], arguments=b.get("input") or {})) for b in reply.tool_uses)
            )
            messages.append({
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b["id"], "content": json.dumps(r.output)}
                    for b, r in zip(reply.tool_uses, results)
                ],
            })
        raise RuntimeError("direct agent: max iterations")

    # -- measurement ------------------------------------------------------------------------------
    async def sequential(self, make: Callable[[int], dict[str, Any]], runs: int) -> list[float]:
        latencies = []
        for i in range(runs):
            t0 = time.perf_counter()
            await self.run(make(i))
            latencies.append(time.perf_counter() - t0)
        return latencies

    async def burst(self, make: Callable[[int], dict[str, Any]], n: int, concurrency: int | None = None) -> tuple[float, list[float]]:
        """N nodes at once (all of them unless `concurrency` is given), like the shipped worker's
        2000 activity slots; the Redis client's pool (REDIS_MAX_CONNECTIONS, 200) makes the rest
        wait for a connection."""
        t0 = time.perf_counter()
        slots = asyncio.Semaphore(concurrency or n)

        async def one(i: int) -> float:
            async with slots:
                await self.run(make(i))
            return time.perf_counter() - t0

        latencies = await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0, list(latencies)
