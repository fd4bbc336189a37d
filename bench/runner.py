"""The benchmark run: services up, phases in order, table and JSON out, everything stopped.

On the dev server as `make run` and the tests start it (executor.local_services.start_temporal, which
passes `history.transferProcessorMaxPollRPS=1000`):
  1 bare         BareNode started by a client, its worker in its own process
  2 ours         tool, llm, agent (k=3) nodes: XADD executor.work → node.completed
  3 regular steps  ours with LOCAL_STEPS=false on the ingress (every step a regular activity, as before 0.2)
  4 direct       the same steps in-process, no Temporal, no stream
  5 experiments  ours with 2 worker processes, and with scratch changes in the worker process only
                 (bench/worker.py); the bare workflow with eager start
  6 waiting      agent loops held by a slow LLM on one worker: temporalio's defaults (by
                 environment), then the executor as shipped
  peer         our agent node beside pydantic-ai's TemporalDurability agent, same task, same LLM
               and dev server (bench/peer_phase.py); kept in the budget before the experiments
  long loop    one 100-round agent loop (bench/long_loop.py), if time allows
Then, if time allows, on a stock dev server (no dynamic config, as before that flag):
  7 reference    bare and ours tool nodes at low load only: the single shard's dispatch delay
Each phase has its own task queue and work stream; ours uses the real `executor.work`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import baseline, histories, long_loop, peer_phase, report, waiting
from bench.direct import Direct
from bench.stack import API_KEY, ROOT, BenchStack, Service, cpu_seconds, load_average, system_busy_seconds
from bench.workloads import AGENT_ITERATIONS, NODES, ResultReader, StreamDriver, watched

ARTIFACTS = ROOT / "test-artifacts"
# --waiting NAME,...: worker settings of the waiting loops: label, BENCH_PATCHES, environment
WAITING_VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "defaults": (
        "temporalio defaults: 100 activity slots, 1000 cached, 1000 LLM connections", "",
        {"WORKER_MAX_ACTIVITIES": "100", "WORKER_MAX_CACHED_WORKFLOWS": "1000", "LLM_MAX_CONNECTIONS": "1000"},
    ),
    "shipped": ("as shipped: 2000 activity slots, 2000 cached, 2000 LLM connections", "", {}),
    "activities": ("2000 activity slots, 1000 LLM connections", "", {"LLM_MAX_CONNECTIONS": "1000"}),
    "heartbeat": ("as shipped, heartbeat every 10 s", "heartbeat=10", {}),
    "full-sandbox": ("as shipped + WORKFLOW_SANDBOX=full", "", {"WORKFLOW_SANDBOX": "full"}),
    # sized for N loops (N = --loops: "{loops}" in a value, filled in by waiting_phase). `sized` is
    # what docs/configuration.md advised before 0.2 (a slot, a cached workflow and a connection per
    # loop); `sized-calls` is what it advises now
    "sized": (
        "sized for the loops: WORKER_MAX_ACTIVITIES = WORKER_MAX_CACHED_WORKFLOWS = LLM_MAX_CONNECTIONS = {loops}", "",
        {"WORKER_MAX_ACTIVITIES": "{loops}", "WORKER_MAX_CACHED_WORKFLOWS": "{loops}", "LLM_MAX_CONNECTIONS": "{loops}"},
    ),
    "sized-full-sandbox": (
        "sized for the loops, WORKFLOW_SANDBOX=full", "",
        {"WORKER_MAX_ACTIVITIES": "{loops}", "WORKER_MAX_CACHED_WORKFLOWS": "{loops}", "LLM_MAX_CONNECTIONS": "{loops}", "WORKFLOW_SANDBOX": "full"},
    ),
    # what docs/configuration.md advises: a slot and a connection per loop, the cache as shipped
    "sized-calls": (
        "a slot and a connection per loop: WORKER_MAX_ACTIVITIES = LLM_MAX_CONNECTIONS = {loops}, WORKER_MAX_CACHED_WORKFLOWS as shipped (2000)", "",
        {"WORKER_MAX_ACTIVITIES": "{loops}", "LLM_MAX_CONNECTIONS": "{loops}"},
    ),
    "sized-cache-1000": (
        "sized for the loops but WORKER_MAX_CACHED_WORKFLOWS=1000", "",
        {"WORKER_MAX_ACTIVITIES": "{loops}", "WORKER_MAX_CACHED_WORKFLOWS": "1000", "LLM_MAX_CONNECTIONS": "{loops}"},
    ),
}
# --experiments NAME,...: tool-node runs beside ours: label, BENCH_PATCHES, environment, workers
EXPERIMENTS: dict[str, tuple[str, str, dict[str, str], int]] = {
    "2-workers": ("ours, 2 worker processes", "", {}, 2),
    "unsandboxed": ("ours + unsandboxed (patch)", "unsandboxed", {}, 1),
    "no-search-attributes": ("ours + no search attributes (patch)", "no-search-attributes", {}, 1),
    "attributes-by-upsert": ("ours + search attributes by upsert, as before 0.2 (patch)", "ingress:attributes-by-upsert", {}, 1),
    "full-sandbox": ("ours + WORKFLOW_SANDBOX=full", "", {"WORKFLOW_SANDBOX": "full"}, 1),
    "all": ("ours + unsandboxed + no search attributes (patch)", "unsandboxed,no-search-attributes", {}, 1),
}
REGULAR_STEPS = {"LOCAL_STEPS": "false"}  # the opt-out: every step a regular activity
FULL_SANDBOX = {"WORKFLOW_SANDBOX": "full"}


@dataclass
class Plan:
    warmup: int = 5
    sequential: int = 30
    burst: int = 200
    agent_k: int = AGENT_ITERATIONS
    waiting_loops: int = 2000
    waiting_budget: float = 90.0
    waiting_variants: tuple[str, ...] = ("defaults", "shipped")
    local_steps_kinds: tuple[str, ...] = ("tool", "agent")
    experiments: tuple[str, ...] = ("2-workers", "unsandboxed", "full-sandbox", "attributes-by-upsert", "no-search-attributes", "all")
    eager: bool = True
    stock_reference: bool = True
    waiting: bool = True
    only_waiting: bool = False
    long_loop: bool = True  # the long-loop row (bench/long_loop.py)
    only_long_loop: bool = False
    peer: bool = True  # the pydantic-ai row beside our agent node (bench/peer_phase.py)
    peer_k: int = peer_phase.PEER_K
    only_peer: bool = False
    budget_seconds: float = 300.0  # optional phases are skipped when the rest would not fit


class Clock:
    def __init__(self, budget: float):
        self.t0 = time.monotonic()
        self.budget = budget

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"bench [{time.monotonic() - _T0:5.0f}s]: {message}", flush=True)


def cpu_of(stack: BenchStack) -> dict[str, float]:
    """CPU seconds so far of every child and of this process, by name, and of the whole machine."""
    out = {"machine": system_busy_seconds(), "bench (client)": time.process_time()}
    for proc in stack.procs:
        if proc.alive():
            try:
                out[proc.name] = cpu_seconds(proc.pid)
            except OSError:
                pass
    return out


def cores_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each process kept busy over `seconds` (1.0 = one core fully); `others` is what the
    rest of the machine used meanwhile (another test run on the same cores makes figures noisy)."""
    used = {k: (after[k] - before[k]) / seconds for k in after if k in before and seconds > 0 and after[k] >= before[k]}
    machine = used.pop("machine", 0.0)
    used["others"] = max(0.0, machine - sum(used.values()))
    return {k: round(v, 2) for k, v in used.items() if v >= 0.005}


def summarize(label: str, kind: str, group: str, low: list[float], burst_s: float, burst_lat: list[float], n: int, cores: dict[str, float]) -> dict[str, Any]:
    """A workload's figures; CPU per node (ms of CPU per workflow, by process) is the figure that
    other load on the machine disturbs least."""
    return {
        "label": label,
        "kind": kind,
        "group": group,
        "throughput_wf_s": round(n / burst_s, 1),
        "burst": {"n": n, "seconds": round(burst_s, 2), **report.latency_stats(burst_lat)},
        "low_load": report.latency_stats(low),
        "cores_during_burst": cores,
        "cpu_ms_per_node": {k: round(v * burst_s / n * 1000, 2) for k, v in cores.items() if k != "others"},
    }


# -- phases ---------------------------------------------------------------------------------------


async def bare_phase(stack: BenchStack, client: Any, plan: Plan, label: str, group: str, *, burst: bool = True) -> dict[str, Any]:
    tq = f"bench-bare-{uuid.uuid4().hex[:6]}"
    address = client.service_client.config.target_host
    proc = stack.spawn("bare-worker", [sys.executable, "-m", "bench.baseline", "worker", "--address", address, "--task-queue", tq])
    try:
        await watched(baseline.sequential(client, tq, plan.warmup), watch=[proc], timeout=60, what="bare warm-up")
        low = await watched(baseline.sequential(client, tq, plan.sequential), watch=[proc], timeout=120, what="bare at low load")
        if burst:
            before = cpu_of(stack)
            seconds, runs = await watched(baseline.saturation(client, tq, plan.burst), watch=[proc], timeout=180, what="bare burst")
            cores = cores_used(before, cpu_of(stack), seconds)
            row = summarize(label, "tool", group, baseline.latencies(low), seconds, baseline.latencies(runs), plan.burst, cores)
        else:
            row = {"label": label, "kind": "tool", "group": group, "low_load": report.latency_stats(baseline.latencies(low))}
        row["low_load_to_emit"] = report.latency_stats(await baseline.to_emit(low))
        say(
            f"{label}: {row.get('throughput_wf_s', '-')} wf/s, p50 {row['low_load']['p50_ms']} ms "
            f"(to emit done: {row['low_load_to_emit']['p50_ms']} ms), cores {row.get('cores_during_burst', '-')}"
        )
        return row
    finally:
        stack.stop(proc)


async def ours_phase(
    stack: BenchStack, driver: StreamDriver, plan: Plan, kinds: list[str] | tuple[str, ...], label: str, group: str, *, burst: bool = True,
    client: Any = None,
) -> dict[str, dict[str, Any]]:
    out = {}
    for kind in kinds:
        make = NODES[kind]
        name = f"{kind} node" + (f" (k={plan.agent_k})" if kind == "agent" else "")
        await driver.sequential(make, plan.warmup)
        low = await driver.sequential(make, plan.sequential)
        if not burst:
            out[kind] = {"label": f"{label}: {name}", "kind": kind, "group": group, "low_load": report.latency_stats(low)}
            say(f"{label} {kind}: p50 {out[kind]['low_load']['p50_ms']} ms")
            continue
        await asyncio.sleep(0.5)
        before, calls = cpu_of(stack), await peer_phase.redis_calls(driver.redis)
        seconds, lat = await driver.burst(make, plan.burst)
        out[kind] = summarize(f"{label}: {name}", kind, group, low, seconds, lat, plan.burst, cores_used(before, cpu_of(stack), seconds))
        # Redis commands per node during the burst (the bench's own XADD and result XREADs included)
        out[kind]["redis_commands_per_node"] = peer_phase.per_node(calls, await peer_phase.redis_calls(driver.redis), plan.burst)
        if driver.events and client is not None:  # one low-load history: events and bytes per node
            out[kind]["history"] = {
                k: v for k, v in (await histories.describe(client, driver.events[-1]["data"]["workflow_id"])).items() if k != "timeline"
            }
        say(f"{label} {kind}: {out[kind]['throughput_wf_s']} wf/s, p50 {out[kind]['low_load']['p50_ms']} ms, cores {out[kind]['cores_during_burst']}")
        await asyncio.sleep(0.5)
    if driver.failed:
        raise RuntimeError(f"{driver.failed} nodes of {label} failed (see test-artifacts/bench.log)")
    return out


def with_services(stack: BenchStack, name: str, stream: str, patches: str = "", workers: int = 1, **env: str) -> tuple[list[Service], Service]:
    """Workers and an ingress of their own (task queue, stream); the ingress blocks 200 ms per
    read like in the tests (a new entry wakes it at once either way). `env` goes to both: the
    ingress reads LOCAL_STEPS, the worker its sizes."""
    tq = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    # `ingress:NAME` patches go to the ingress, the others to the workers
    parts = [p for p in patches.split(",") if p]
    ingress_patches = ",".join(p.removeprefix("ingress:") for p in parts if p.startswith("ingress:"))
    patches = ",".join(p for p in parts if not p.startswith("ingress:"))
    procs = [
        stack.start_worker(f"worker-{name}" + (f"-{i}" if workers > 1 else ""), tq, stream, stack.llm_url, patches=patches, **env)
        for i in range(workers)
    ]
    ingress = stack.start_ingress(f"ingress-{name}", tq, stream, patches=ingress_patches, INGRESS_BLOCK_MS="200", **env)
    return procs, ingress


async def ours_services_phase(
    stack: BenchStack, redis: Any, reader: ResultReader, plan: Plan, kinds: list[str] | tuple[str, ...], label: str, group: str,
    *, stream: str | None = None, patches: str = "", workers: int = 1, burst: bool = True, client: Any = None, **env: str,
) -> dict[str, dict[str, Any]]:
    stream = stream or f"bench.{group}.{uuid.uuid4().hex[:6]}"
    worker_services, ingress = with_services(stack, group, stream, patches=patches, workers=workers, **env)
    try:
        driver = StreamDriver(redis, reader, stream, watch=[*(w.proc for w in worker_services), ingress.proc])
        out = await ours_phase(stack, driver, plan, kinds, label, group, burst=burst, client=client)
        for row in out.values():
            row.update({"patches": patches or "(none)", "env": env, "worker_processes": workers})
        return out
    finally:
        stack.stop(ingress.proc)
        for w in worker_services:
            stack.stop(w.proc)


async def direct_phase(stack: BenchStack, plan: Plan) -> dict[str, dict[str, Any]]:
    from adapters.settings import Settings

    settings = Settings(
        redis_addr=f"127.0.0.1:{stack.redis_port}", llm_base_url=stack.llm_url, llm_api_key=API_KEY, llm_model="echo-default",
    )
    direct = Direct(settings)
    out = {}
    try:
        for kind, make in NODES.items():
            await direct.sequential(make, plan.warmup)
            low = await direct.sequential(make, plan.sequential)
            before = cpu_of(stack)
            seconds, lat = await direct.burst(make, plan.burst)
            cores = cores_used(before, cpu_of(stack), seconds)
            out[kind] = summarize(f"direct in-process: {kind} node", kind, "direct", low, seconds, lat, plan.burst, cores)
            say(f"direct {kind}: {out[kind]['throughput_wf_s']} nodes/s, p50 {out[kind]['low_load']['p50_ms']} ms, cores {cores}")
    finally:
        await direct.close()
    return out


async def eager_phase(client: Any, plan: Plan) -> dict[str, Any]:
    """BareNode with its worker in this (the client's) process: eager start off and on."""
    tq = f"bench-eager-{uuid.uuid4().hex[:6]}"
    out: dict[str, Any] = {}
    async with baseline.bare_worker(client, tq):
        await baseline.sequential(client, tq, plan.warmup)
        for eager in (False, True):
            runs = await baseline.sequential(client, tq, plan.sequential, eager=eager)
            eagerly = sum(r.eager for r in runs)
            key = "eager" if eager else "not_eager"
            out[key] = {"low_load": report.latency_stats(baseline.latencies(runs)), "eagerly_started": eagerly, "runs": plan.sequential}
            say(f"bare, worker in the client's process, eager={eager}: p50 {out[key]['low_load']['p50_ms']} ms ({eagerly}/{plan.sequential} eager)")
    return out


# -- the run --------------------------------------------------------------------------------------

WAITING_SECONDS = 60.0  # what one waiting-loops variant takes, about (2000 loops on 2 cores)
STOCK_SECONDS = 25.0
PEER_SECONDS = 75.0  # the peer row, about: 3 × (35 agents one at a time + a burst of 200) on 2 cores
LONG_LOOP_SECONDS = 90.0  # the long-loop row, about (100 rounds as shipped, then before transcripts, on 2 cores)  # the stock-server reference: a server start, 2 × 35 nodes one at a time


async def phases(stack: BenchStack, plan: Plan, clock: Clock, results: dict[str, Any]) -> None:
    say("starting Temporal dev server (as shipped), Redis and the LLM server")
    stack.start_infra()
    redis = aioredis.Redis(port=stack.redis_port)
    reader = ResultReader(redis)
    await reader.start()
    try:
        client = await baseline.connect(stack.temporal_address)
        if plan.only_long_loop:
            await long_loop_phase(stack, redis, reader, client, results)
            return
        if plan.only_peer:
            await peer_phase_run(stack, plan, redis, reader, client, results)
            return
        if not plan.only_waiting:
            await main_phases(stack, plan, clock, redis, reader, client, results)
        if plan.peer and not plan.only_waiting:
            if clock.left() < PEER_SECONDS + (STOCK_SECONDS if plan.stock_reference else 0):
                results["skipped"].append("peer row: time budget (run it alone: python -m bench --only peer)")
            else:
                await peer_phase_run(stack, plan, redis, reader, client, results)
        if plan.long_loop and not plan.only_waiting:
            if clock.left() < LONG_LOOP_SECONDS + (STOCK_SECONDS if plan.stock_reference else 0):
                results["skipped"].append("long loop: time budget (run it alone: python -m bench --only long-loop)")
            else:
                await long_loop_phase(stack, redis, reader, client, results)
        if plan.waiting:
            await waiting_phase(stack, plan, clock, redis, reader, client, results)
        if plan.stock_reference and not plan.only_waiting:
            if clock.left() < STOCK_SECONDS:
                results["skipped"].append("stock dev server reference: time budget")
            else:
                await stock_phase(stack, plan, redis, reader, results)
    finally:
        reader.forget()
        await reader.close()
        await redis.aclose()


async def main_phases(stack: BenchStack, plan: Plan, clock: Clock, redis: Any, reader: ResultReader, client: Any, results: dict[str, Any]) -> None:
    say(f"1/6 bare Temporal ceiling: {plan.sequential} sequential, {plan.burst} at once")
    results["bare"] = await bare_phase(stack, client, plan, "bare Temporal (3 no-op activities + timer)", "bare")

    say("2/6 ours end to end (XADD executor.work → node.completed): tool, llm, agent")
    ours = await ours_services_phase(stack, redis, reader, plan, list(NODES), "ours", "ours", stream="executor.work", client=client)
    results["workloads"].update({f"ours_{k}": v for k, v in ours.items()})

    if plan.local_steps_kinds:
        say(f"3/6 ours with LOCAL_STEPS=false on the ingress: {', '.join(plan.local_steps_kinds)}")
        regular = await ours_services_phase(stack, redis, reader, plan, plan.local_steps_kinds, "ours + LOCAL_STEPS=false", "regular", client=client, **REGULAR_STEPS)
        results["workloads"].update({f"regular_{k}": v for k, v in regular.items()})

    say(f"4/6 direct in-process executor (no Temporal, no stream; {plan.burst} at once)")
    results["direct"] = await direct_phase(stack, plan)

    say("5/6 experiments (tool nodes): " + (", ".join(plan.experiments) or "none"))
    reserve = (
        (WAITING_SECONDS * len(plan.waiting_variants) if plan.waiting else 0) + (STOCK_SECONDS if plan.stock_reference else 0)
        + (PEER_SECONDS if plan.peer else 0)  # the peer row goes before the optional experiments
    )
    for name in plan.experiments:
        if clock.left() < 20 + reserve:
            results["skipped"].append(f"experiment {name}: time budget")
            continue
        label, patches, env, workers = EXPERIMENTS[name]
        exp = await ours_services_phase(stack, redis, reader, plan, ["tool"], label, "experiment", patches=patches, workers=workers, **env)
        results["workloads"][f"exp_{name}_tool"] = exp["tool"]
    if plan.eager:
        results["eager"]["dev server as shipped"] = await eager_phase(client, plan)


async def peer_phase_run(stack: BenchStack, plan: Plan, redis: Any, reader: ResultReader, client: Any, results: dict[str, Any]) -> None:
    say(f"peer row: our agent node (k={plan.peer_k}) beside pydantic-ai's TemporalDurability agent, same LLM server and dev server")
    # this module is passed in so that bench/peer_phase.py reuses its helpers without importing it back
    results["peer"] = await peer_phase.measure(sys.modules[__name__], stack, redis, reader, client, plan)


async def long_loop_phase(stack: BenchStack, redis: Any, reader: ResultReader, client: Any, results: dict[str, Any]) -> None:
    say(f"long loop: one agent node, {long_loop.ROUNDS} rounds of {long_loop.KIB_PER_ROUND} KiB tool results")
    results["long_loop"] = await long_loop.measure(stack, redis, reader, client)
    say(long_loop.lines(results["long_loop"]))
    results["long_loop_before"] = await long_loop.measure(stack, redis, reader, client, patches="no-transcripts")
    say(long_loop.lines(results["long_loop_before"]))


async def waiting_phase(stack: BenchStack, plan: Plan, clock: Clock, redis: Any, reader: ResultReader, client: Any, results: dict[str, Any]) -> None:
    say(f"6/6 waiting agent loops: {plan.waiting_loops} held by a slow LLM, one worker")
    variants = plan.waiting_variants
    reserve = STOCK_SECONDS if plan.stock_reference and not plan.only_waiting else 0
    for n, key in enumerate(variants):
        name, patches, env = WAITING_VARIANTS[key]
        name, env = name.format(loops=plan.waiting_loops), {k: v.format(loops=plan.waiting_loops) for k, v in env.items()}
        run_budget = min(plan.waiting_budget, max(15.0, (clock.left() - reserve - 5) / (len(variants) - n) - 8))
        w = await waiting.measure(stack, redis, reader, client, label=name, patches=patches, loops=plan.waiting_loops, budget=run_budget, **env)
        w["env"] = env
        results["waiting"].append(w)
        say(
            f"waiting ({name}): {w['max_in_flight']} in flight of {w['submitted']} "
            f"({w['started']} started, {w['open_workflows']} open), RSS {w['rss_idle_mib']} → {w['rss_loaded_mib']} MiB, "
            f"{w['rss_per_loop_kib']} KiB/loop, CPU {w['cpu_percent_waiting']}%"
        )


async def stock_phase(stack: BenchStack, plan: Plan, redis: Any, reader: ResultReader, results: dict[str, Any]) -> None:
    """For reference, the dev server before `transferProcessorMaxPollRPS=1000`: low load only (the
    dispatch delay is a latency effect; a burst would mostly repeat the figures above)."""
    say("reference: a stock dev server (no dynamic config): bare and ours tool nodes at low load")
    if stack.temporal is not None:
        stack.stop(stack.temporal)  # 2 cores; and it holds the waiting loops' open workflows
        stack.temporal = None
    _, address = stack.start_stock_temporal("temporal-stock")
    client = await baseline.connect(address)
    bare = await bare_phase(stack, client, plan, "bare Temporal, stock dev server", "stock", burst=False)
    ours = await ours_services_phase(
        stack, redis, reader, plan, ["tool"], "ours, stock dev server", "stock", burst=False, TEMPORAL_ADDRESS=address,
    )
    results["stock_server"] = {"bare": bare, "ours_tool": ours["tool"]}


async def run(plan: Plan, log_path: Path, out_path: Path) -> int:
    # SIGTERM (e.g. `timeout`) cancels the run like Ctrl-C does, so every child is still stopped
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    clock = Clock(plan.budget_seconds)
    results: dict[str, Any] = {
        "command": "make bench  (.venv/bin/python -m bench)",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "load_average_at_start": round(load_average(), 2),
        "plan": asdict(plan),
        "workloads": {},
        "direct": {},
        "waiting": [],
        "eager": {},
        "skipped": [],
        "errors": [],
    }
    if results["load_average_at_start"] > 1.0:
        say(f"load average {results['load_average_at_start']}: something else is using the CPU; figures will be noisy")
    busy0 = system_busy_seconds()
    code = 0
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, open(log_path, "w") as log:
        stack = BenchStack(Path(tmp), log)
        try:
            await phases(stack, plan, clock, results)
        except Exception as exc:  # noqa: BLE001 - report what was measured, then fail the command
            code = 1
            results["errors"].append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            say("stopping every process")
            stack.close()
    results["seconds"] = round(clock.elapsed, 1)
    results["machine_cores_busy_mean"] = round((system_busy_seconds() - busy0) / clock.elapsed, 2)
    report.write_json(results, out_path)
    if results["workloads"] or results["direct"]:
        print()
        print(report.table(results))
        print()
        print(report.cpu_table(results))
        if per_node := report.per_node_table(results):
            print()
            print(per_node)
    if results["waiting"]:
        print()
        print(report.waiting_table(results))
    if results["eager"]:
        print()
        print(report.eager_lines(results))
    if results.get("peer"):
        print()
        print(peer_phase.table(results))
    if results.get("long_loop"):
        print()
        print(long_loop.lines(results["long_loop"]))
        print(long_loop.lines(results["long_loop_before"]))
    if results.get("stock_server"):
        print()
        print(report.stock_lines(results))
    for item in results["skipped"]:
        print(f"skipped: {item}")
    for item in results["errors"]:
        print(f"error: {item}")
    print(f"\nbench: {results['seconds']} s; figures in {out_path}", flush=True)
    return code


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description="throughput and latency of the durable node executor")
    p.add_argument("--quick", action="store_true", help="small N everywhere (a smoke run, about a minute)")
    p.add_argument("--no-waiting", action="store_true", help="skip the waiting agent loops")
    p.add_argument("--no-experiments", action="store_true", help="skip LOCAL_STEPS, the experiments, eager start and the stock server")
    p.add_argument("--loops", type=int, default=None, help="waiting agent loops (default 2000)")
    p.add_argument("--waiting", default=None, help=f"worker settings of the waiting loops, from {','.join(WAITING_VARIANTS)} (default: defaults,shipped)")
    p.add_argument("--only-waiting", action="store_true", help="only the waiting agent loops")
    p.add_argument("--only", choices=["long-loop", "peer"], default=None, help="only this row (long-loop: 100 rounds over an ~800 KB conversation; peer: ours beside pydantic-ai's Temporal agent)")
    p.add_argument("--no-peer", action="store_true", help="skip the pydantic-ai peer row")
    p.add_argument("--peer-k", type=int, default=None, help=f"model calls of the peer row's agent task (default {peer_phase.PEER_K})")
    p.add_argument("--waiting-budget", type=float, default=None, help="seconds one waiting-loops variant may take (default 90)")
    p.add_argument("--no-long-loop", action="store_true", help="skip the long-loop row")
    p.add_argument("--experiments", default=None, help=f"','-separated tool-node experiments, from {','.join(EXPERIMENTS)} (default: all of them)")
    p.add_argument("--no-stock", action="store_true", help="skip the stock dev server reference")
    p.add_argument("--burst", type=int, default=None, help="N started at once (default 200)")
    p.add_argument("--sequential", type=int, default=None, help="runs at low load (default 30)")
    p.add_argument("--out", default=str(ARTIFACTS / "bench-results.json"), help="where the JSON figures go")
    p.add_argument("--budget", type=float, default=None, help="seconds the optional phases may take in all (default 300)")
    args = p.parse_args()
    plan = Plan()
    if args.quick:
        plan = Plan(warmup=2, sequential=10, burst=40, waiting_loops=300, waiting_budget=20, local_steps_kinds=("tool",), experiments=("2-workers",))
    if args.no_waiting:
        plan.waiting = False
    if args.no_experiments:
        plan.local_steps_kinds, plan.experiments, plan.eager, plan.stock_reference = (), (), False, False
    if args.no_stock:
        plan.stock_reference = False
    plan.waiting_loops = args.loops or plan.waiting_loops
    plan.only_waiting = args.only_waiting
    plan.only_long_loop = args.only == "long-loop"
    plan.only_peer = args.only == "peer"
    plan.peer = not args.no_peer
    plan.peer_k = args.peer_k or plan.peer_k
    plan.waiting_budget = args.waiting_budget or plan.waiting_budget
    plan.long_loop = not args.no_long_loop
    if args.experiments is not None:
        plan.experiments = tuple(e for e in args.experiments.split(",") if e)
        if unknown := [e for e in plan.experiments if e not in EXPERIMENTS]:
            p.error(f"unknown experiments {unknown}; known: {', '.join(EXPERIMENTS)}")
    if args.waiting:
        plan.waiting_variants = tuple(args.waiting.split(","))
        if unknown := [w for w in plan.waiting_variants if w not in WAITING_VARIANTS]:
            p.error(f"unknown waiting variants {unknown}; known: {', '.join(WAITING_VARIANTS)}")
    plan.budget_seconds = args.budget or plan.budget_seconds
    plan.burst = args.burst or plan.burst
    plan.sequential = args.sequential or plan.sequential
    ARTIFACTS.mkdir(exist_ok=True)
    code = 1
    try:
        code = asyncio.run(run(plan, ARTIFACTS / "bench.log", Path(args.out).resolve()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    finally:
        # temporalio's native threads can abort a finalising interpreter (sdk-python#300)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
