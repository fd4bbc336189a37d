"""The peer row (`python -m bench --only peer`, and part of `make bench`): our agent node beside
pydantic-ai's `TemporalDurability` agent (bench/peer.py), the same task (K model calls, K-1
`calculate` calls, K=2 by default), the same scripted LLM server, the same dev server, in the
same run; each side's worker its own process. Rows:

  ours               the executor as shipped: XADD executor-style stream → node.completed event
  ours + LOCAL_STEPS=false   every step a regular activity (the opt-out; as before 0.2)
  ours + full sandbox  WORKFLOW_SANDBOX=full on the worker (passthrough as shipped)
  pydantic-ai        client start_workflow → result (its worker: temporalio defaults but
                     2000 activity slots and 2000 cached, like ours as shipped)

For each: throughput of a burst, p50/p95 one at a time, CPU per node by process during the
burst, Redis commands per node during the burst (INFO commandstats before and after; the bench's
own XADD and result XREADs included, listed by command), and one low-load history: events,
bytes, workflow tasks, activities, markers and the event timeline (bench/histories.py).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import uuid
from typing import Any

from temporalio.client import Client

from bench import histories, report
from bench.workloads import ResultReader, StreamDriver, agent_node, watched

PEER_K = 2  # the task: 2 model calls + 1 tool call
HISTORIES = 10  # low-load histories read per row for the median segments (one is a noisy sample)


async def redis_calls(redis: Any) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def per_node(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    delta = {k: (v - before.get(k, 0)) / n for k, v in after.items()}
    out = {k: round(v, 2) for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v >= 0.01}
    out["total"] = round(sum(delta.values()), 2)
    return out


async def ours_row(run: Any, stack: Any, redis: Any, reader: ResultReader, client: Client, plan: Any, label: str, group: str, k: int, **env: str) -> dict[str, Any]:
    make = functools.partial(agent_node, k=k)
    stream = f"bench.{group}.{uuid.uuid4().hex[:6]}"
    workers, ingress = run.with_services(stack, group, stream, **env)
    try:
        driver = StreamDriver(redis, reader, stream, watch=[*(w.proc for w in workers), ingress.proc])
        await driver.sequential(make, plan.warmup)
        low = await driver.sequential(make, plan.sequential)
        infos = [await histories.describe(client, e["data"]["workflow_id"]) for e in driver.events[-HISTORIES:]]
        history = {**infos[-1], "median_segments": histories.median_segments(infos)}
        await asyncio.sleep(0.5)
        before, calls = run.cpu_of(stack), await redis_calls(redis)
        seconds, lat = await driver.burst(make, plan.burst)
        cores = run.cores_used(before, run.cpu_of(stack), seconds)
        row = run.summarize(label, "agent", group, low, seconds, lat, plan.burst, cores)
        row["redis_commands_per_node"] = per_node(calls, await redis_calls(redis), plan.burst)
        row["history"] = history
        if driver.failed:
            raise RuntimeError(f"{driver.failed} nodes of {label} failed (see test-artifacts/bench.log)")
        return row
    finally:
        stack.stop(ingress.proc)
        for w in workers:
            stack.stop(w.proc)


async def peer_row(run: Any, stack: Any, redis: Any, plan: Any, k: int) -> dict[str, Any]:
    from bench import peer  # pydantic-ai (the `bench` extra) only when this row runs

    tq = f"bench-peer-{uuid.uuid4().hex[:6]}"
    env = {**stack.base_env(), peer.LLM_URL_ENV: stack.llm_url, peer.MODEL_ENV: f"bench-agent-k{k}"}
    proc = stack.spawn("peer-worker", [sys.executable, "-m", "bench.peer", "worker", "--address", stack.temporal_address, "--task-queue", tq], env=env)
    client = await Client.connect(stack.temporal_address)

    async def one(i: int, t0: float | None = None) -> tuple[float, str]:
        start = time.perf_counter() if t0 is None else t0
        handle = await client.start_workflow(peer.WORKFLOW, f"count to {i}", id=f"peer-{uuid.uuid4().hex}", task_queue=tq)
        output = await handle.result()
        if not str(output).startswith("done after"):
            raise RuntimeError(f"pydantic-ai agent answered {output!r}, not the scripted final text")
        return time.perf_counter() - start, handle.id

    async def sequential(n: int) -> list[tuple[float, str]]:
        return [await one(i) for i in range(n)]

    label = f"pydantic-ai {peer.VERSION} TemporalDurability: agent (k={k})"
    try:
        await watched(sequential(plan.warmup), watch=[proc], timeout=120, what="peer warm-up")
        low = await watched(sequential(plan.sequential), watch=[proc], timeout=180, what="peer at low load")
        infos = [await histories.describe(client, wf_id) for _, wf_id in low[-HISTORIES:]]
        history = {**infos[-1], "median_segments": histories.median_segments(infos)}
        await asyncio.sleep(0.5)
        before, calls = run.cpu_of(stack), await redis_calls(redis)
        t0 = time.perf_counter()
        runs = await watched(asyncio.gather(*(one(i, t0) for i in range(plan.burst))), watch=[proc], timeout=180, what="peer burst")
        seconds = time.perf_counter() - t0
        cores = run.cores_used(before, run.cpu_of(stack), seconds)
        row = run.summarize(label, "agent", "peer", [s for s, _ in low], seconds, [s for s, _ in runs], plan.burst, cores)
        row["redis_commands_per_node"] = per_node(calls, await redis_calls(redis), plan.burst)
        row["history"] = history
        return row
    finally:
        stack.stop(proc)


async def measure(run: Any, stack: Any, redis: Any, reader: ResultReader, client: Client, plan: Any) -> dict[str, Any]:
    k = plan.peer_k
    out: dict[str, Any] = {"k": k}
    out["ours"] = await ours_row(run, stack, redis, reader, client, plan, f"ours: agent node (k={k})", "peer-ours", k)
    run.say(lines(out["ours"]))
    out["regular"] = await ours_row(run, stack, redis, reader, client, plan, f"ours + LOCAL_STEPS=false: agent node (k={k})", "peer-regular", k, **run.REGULAR_STEPS)
    run.say(lines(out["regular"]))
    out["full_sandbox"] = await ours_row(run, stack, redis, reader, client, plan, f"ours + WORKFLOW_SANDBOX=full: agent node (k={k})", "peer-full", k, **run.FULL_SANDBOX)
    run.say(lines(out["full_sandbox"]))
    out["peer"] = await peer_row(run, stack, redis, plan, k)
    run.say(lines(out["peer"]))
    return out


def lines(row: dict[str, Any]) -> str:
    h = row["history"]
    return (
        f"{row['label']}: {row['throughput_wf_s']} wf/s, p50 {row['low_load']['p50_ms']} ms, p95 {row['low_load']['p95_ms']} ms, "
        f"CPU ms/node {row['cpu_ms_per_node']}, history {h['events']} events / {h['bytes']} B "
        f"({h['workflow_tasks']} workflow tasks, {h['activities']} activities, {h['markers']} markers), "
        f"Redis commands/node {row['redis_commands_per_node'].get('total')}"
    )


def table(results: dict[str, Any]) -> str:
    """Ours beside pydantic-ai: the figures of the issue's part 2, and the ratios to the peer."""
    p = results.get("peer") or {}
    rows = [p[key] for key in ("ours", "regular", "full_sandbox", "peer") if key in p]
    peer_row_ = p.get("peer")
    head = (
        "| agent task, same run | throughput wf/s | p50 ms | p95 ms | CPU ms/node: server | worker | server + worker | all processes "
        "| history events | history bytes | workflow tasks | activities | markers | Redis commands/node | throughput ÷ peer | p50 ÷ peer | server + worker CPU ÷ peer |"
    )
    out = [head, "| " + " | ".join(["---"] * 17) + " |"]
    for r in rows:
        cpu = r["cpu_ms_per_node"]
        server = cpu.get("temporal", 0.0)
        worker = sum(v for name, v in cpu.items() if name.startswith(("worker", "peer-worker")))
        both = server + worker
        h = r["history"]
        ratios = ["-", "-", "-"]
        if peer_row_ and r is not peer_row_:
            pc = peer_row_["cpu_ms_per_node"]
            pboth = pc.get("temporal", 0.0) + sum(v for name, v in pc.items() if name.startswith("peer-worker"))
            ratios = [
                report.fmt(report.ratio(r["throughput_wf_s"], peer_row_["throughput_wf_s"]), 2),
                report.fmt(report.ratio(r["low_load"]["p50_ms"], peer_row_["low_load"]["p50_ms"]), 2),
                report.fmt(report.ratio(both, pboth), 2),
            ]
        out.append(
            f"| {r['label']} | {report.fmt(r['throughput_wf_s'])} | {report.fmt(r['low_load']['p50_ms'])} | {report.fmt(r['low_load']['p95_ms'])} "
            f"| {report.fmt(server)} | {report.fmt(worker)} | {report.fmt(both)} | {report.fmt(sum(cpu.values()))} "
            f"| {h['events']} | {h['bytes']:,} | {h['workflow_tasks']} | {h['activities']} | {h['markers']} "
            f"| {report.fmt(r['redis_commands_per_node'].get('total'))} | {' | '.join(ratios)} |"
        )
    return "\n".join(out)
