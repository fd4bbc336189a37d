"""The benchmark run: services up, phases in order, table and JSON out, everything stopped.

On the dev server as `make run` and the tests start it:
  1 bare         BareNode started by a client, its worker in its own process
  2 ours         tool, llm, agent (k=3) nodes: XADD executor.work → node.completed
  3 direct       the same steps in-process, no Temporal, no stream
                 (and the bare workflow with eager start, its worker in this process)
On a second dev server with `history.transferProcessorMaxPollRPS=1000` (see docs/performance.md):
  4 experiments  bare and ours again, then ours with scratch changes in the worker process only
                 (bench/worker.py), and eager start again
  5 waiting      agent loops held by a slow LLM on one worker: temporalio's defaults, then the
                 executor as shipped
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

from bench import baseline, report, waiting
from bench.direct import Direct
from bench.stack import API_KEY, ROOT, BenchStack, cpu_seconds, load_average, system_busy_seconds
from bench.workloads import AGENT_ITERATIONS, NODES, ResultReader, StreamDriver, watched

ARTIFACTS = ROOT / "test-artifacts"
WAITING_VARIANTS = {  # --waiting NAME,...: worker settings of the waiting loops (bench/worker.py)
    "defaults": (
        "temporalio defaults: 100 activity slots, 1000 cached, 1000 LLM connections", "activities=100,cache=1000,llm-connections=1000",
    ),
    "shipped": ("as shipped (the executor's own defaults)", ""),
    "activities": ("2100 activity slots, 1000 LLM connections", "activities=2100,llm-connections=1000"),
    "tuned": ("2100 activity slots, 2100 cached, 2100 LLM connections", "activities=2100,llm-connections=2100,cache=2100"),
    "heartbeat": ("as shipped, heartbeat every 10 s", "heartbeat=10"),
}
ALL_PATCHES = "unsandboxed,local-steps,no-search-attributes"
TUNED_SERVER = {"history.transferProcessorMaxPollRPS": "1000"}


@dataclass
class Plan:
    warmup: int = 5
    sequential: int = 30
    burst: int = 200
    agent_k: int = AGENT_ITERATIONS
    waiting_loops: int = 2000
    waiting_budget: float = 90.0
    waiting_variants: tuple[tuple[str, str], ...] = (WAITING_VARIANTS["defaults"], WAITING_VARIANTS["shipped"])
    experiments: tuple[str, ...] = ("local-steps", "unsandboxed", "no-search-attributes", ALL_PATCHES)
    eager: bool = True
    server_tuning: bool = True
    waiting: bool = True
    only_waiting: bool = False
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


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


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


async def bare_phase(stack: BenchStack, client: Any, plan: Plan, label: str, group: str) -> dict[str, Any]:
    tq = f"bench-bare-{uuid.uuid4().hex[:6]}"
    address = client.service_client.config.target_host
    proc = stack.spawn("bare-worker", [sys.executable, "-m", "bench.baseline", "worker", "--address", address, "--task-queue", tq])
    try:
        await watched(baseline.sequential(client, tq, plan.warmup), watch=[proc], timeout=60, what="bare warm-up")
        low = await watched(baseline.sequential(client, tq, plan.sequential), watch=[proc], timeout=120, what="bare at low load")
        before = cpu_of(stack)
        seconds, burst = await watched(baseline.saturation(client, tq, plan.burst), watch=[proc], timeout=180, what="bare burst")
        cores = cores_used(before, cpu_of(stack), seconds)
        row = summarize(label, "tool", group, baseline.latencies(low), seconds, baseline.latencies(burst), plan.burst, cores)
        row["low_load_to_emit"] = report.latency_stats(await baseline.to_emit(low))
        say(
            f"{label}: {row['throughput_wf_s']} wf/s, p50 {row['low_load']['p50_ms']} ms "
            f"(to emit done: {row['low_load_to_emit']['p50_ms']} ms), cores {row['cores_during_burst']}"
        )
        return row
    finally:
        stack.stop(proc)


async def ours_phase(stack: BenchStack, driver: StreamDriver, plan: Plan, kinds: list[str], label: str, group: str) -> dict[str, dict[str, Any]]:
    out = {}
    for kind in kinds:
        make = NODES[kind]
        name = f"{kind} node" + (f" (k={plan.agent_k})" if kind == "agent" else "")
        await driver.sequential(make, plan.warmup)
        low = await driver.sequential(make, plan.sequential)
        await asyncio.sleep(0.5)
        before = cpu_of(stack)
        seconds, lat = await driver.burst(make, plan.burst)
        out[kind] = summarize(f"{label}: {name}", kind, group, low, seconds, lat, plan.burst, cores_used(before, cpu_of(stack), seconds))
        say(f"{label} {kind}: {out[kind]['throughput_wf_s']} wf/s, p50 {out[kind]['low_load']['p50_ms']} ms, cores {out[kind]['cores_during_burst']}")
        await asyncio.sleep(0.5)
    if driver.failed:
        raise RuntimeError(f"{driver.failed} nodes of {label} failed (see test-artifacts/bench.log)")
    return out


async def with_services(stack: BenchStack, name: str, stream: str, patches: str = "", **env: str) -> tuple[Any, Any]:
    """A worker and an ingress of their own (task queue, stream); the ingress blocks 200 ms per
    read like in the tests (a new entry wakes it at once either way)."""
    tq = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    worker = stack.start_worker(f"worker-{name}", tq, stream, stack.llm_url, patches=patches, **env)
    ingress = stack.start_ingress(f"ingress-{name}", tq, stream, INGRESS_BLOCK_MS="200", **env)
    return worker, ingress


async def ours_tool_experiment(stack: BenchStack, redis: Any, reader: ResultReader, plan: Plan, patches: str, label: str, **env: str) -> dict[str, Any]:
    stream = f"bench.exp.{uuid.uuid4().hex[:6]}"
    worker, ingress = await with_services(stack, "exp", stream, patches=patches, **env)
    try:
        driver = StreamDriver(redis, reader, stream, watch=[worker.proc, ingress.proc])
        exp = await ours_phase(stack, driver, plan, ["tool"], label, "experiment")
        return exp["tool"] | {"patches": patches or "(none)"}
    finally:
        stack.stop(ingress.proc)
        stack.stop(worker.proc)


async def direct_phase(stack: BenchStack, plan: Plan) -> dict[str, dict[str, Any]]:
    from executor.config import Settings

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


async def phases(stack: BenchStack, plan: Plan, clock: Clock, results: dict[str, Any]) -> None:
    say("starting Temporal dev server, Redis and the LLM server")
    stack.start_infra()
    redis = aioredis.Redis(port=stack.redis_port)
    reader = ResultReader(redis)
    await reader.start()
    try:
        client = await baseline.connect(stack.temporal_address)
        if plan.only_waiting:
            plan.server_tuning = plan.eager = False
        else:
            await default_server_phases(stack, plan, redis, reader, client, results)
        if not (plan.server_tuning or plan.waiting):
            return
        await tuned_server_phases(stack, plan, clock, redis, reader, results)
    finally:
        reader.forget()
        await reader.close()
        await redis.aclose()


async def default_server_phases(stack: BenchStack, plan: Plan, redis: Any, reader: ResultReader, client: Any, results: dict[str, Any]) -> None:
    say(f"1/5 bare Temporal ceiling: {plan.sequential} sequential, {plan.burst} at once")
    results["bare"] = await bare_phase(stack, client, plan, "bare Temporal (3 no-op activities + timer)", "bare")

    say("2/5 ours end to end (XADD executor.work → node.completed): tool, llm, agent")
    worker, ingress = await with_services(stack, "ours", "executor.work")
    try:
        driver = StreamDriver(redis, reader, "executor.work", watch=[worker.proc, ingress.proc])
        ours = await ours_phase(stack, driver, plan, list(NODES), "ours", "ours")
        results["workloads"].update({f"ours_{k}": v for k, v in ours.items()})
    finally:
        stack.stop(ingress.proc)
        stack.stop(worker.proc)

    say("3/5 direct in-process executor (no Temporal, no stream)")
    results["direct"] = await direct_phase(stack, plan)
    if plan.eager:
        results["eager"]["default server"] = await eager_phase(client, plan)


async def tuned_server_phases(stack: BenchStack, plan: Plan, clock: Clock, redis: Any, reader: ResultReader, results: dict[str, Any]) -> None:
    """The rest on a second dev server (the first one is stopped: 2 cores, and its history)."""
    stack.stop(stack.temporal)
    label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in TUNED_SERVER.items())
    say(f"4/5 a dev server with {label}: bare, ours, scratch changes (in bench processes only)")
    _, address = stack.start_temporal_with("temporal-tuned", TUNED_SERVER)
    client = await baseline.connect(address)
    results["tuned_server"] = {"dynamic_config": TUNED_SERVER}
    if plan.server_tuning:
        results["bare_server_tuned"] = await bare_phase(stack, client, plan, f"bare Temporal, server {label}", "bare-tuned")
        results["workloads"]["tuned_ours_tool"] = await ours_tool_experiment(
            stack, redis, reader, plan, "", f"ours, server {label}", TEMPORAL_ADDRESS=address
        )
        for patches in plan.experiments:
            if clock.left() < 25 + 55 * len(plan.waiting_variants) * plan.waiting:
                results["skipped"].append(f"experiment {patches}: time budget")
                continue
            name = patches.replace(",", "+")
            results["workloads"][f"tuned_exp_{name}_tool"] = await ours_tool_experiment(
                stack, redis, reader, plan, patches, f"ours + {name}, server {label}", TEMPORAL_ADDRESS=address
            )
        if plan.eager:
            results["eager"][f"server {label}"] = await eager_phase(client, plan)

    if plan.waiting:
        say(f"5/5 waiting agent loops: {plan.waiting_loops} held by a slow LLM, one worker (server {label})")
        variants = plan.waiting_variants
        for n, (name, patches) in enumerate(variants):
            run_budget = min(plan.waiting_budget, max(15.0, (clock.left() - 5) / (len(variants) - n) - 8))
            w = await waiting.measure(
                stack, redis, reader, client, label=name, patches=patches, loops=plan.waiting_loops, budget=run_budget,
                TEMPORAL_ADDRESS=address,
            )
            results["waiting"].append(w)
            say(
                f"waiting ({name}): {w['max_in_flight']} in flight of {w['submitted']} "
                f"({w['started']} started, {w['open_workflows']} open), RSS {w['rss_idle_mib']} → {w['rss_loaded_mib']} MiB, "
                f"{w['rss_per_loop_kib']} KiB/loop, CPU {w['cpu_percent_waiting']}%"
            )


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
            stack.close()
    results["seconds"] = round(clock.elapsed, 1)
    results["machine_cores_busy_mean"] = round((system_busy_seconds() - busy0) / clock.elapsed, 2)
    report.write_json(results, out_path)
    print()
    print(report.table(results))
    print()
    print(report.cpu_table(results))
    if results["waiting"]:
        print()
        print(report.waiting_table(results))
    if results["eager"]:
        print()
        print(report.eager_lines(results))
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
    p.add_argument("--no-experiments", action="store_true", help="skip the scratch experiments and the second server")
    p.add_argument("--loops", type=int, default=None, help="waiting agent loops (default 2000)")
    p.add_argument("--waiting", default=None, help=f"worker settings of the waiting loops, from {','.join(WAITING_VARIANTS)} (default: defaults,shipped)")
    p.add_argument("--only-waiting", action="store_true", help="only the waiting agent loops")
    p.add_argument("--experiments", default=None, help="';'-separated BENCH_PATCHES sets for the tool-node experiments (see bench/worker.py)")
    p.add_argument("--burst", type=int, default=None, help="N started at once (default 200)")
    p.add_argument("--sequential", type=int, default=None, help="runs at low load (default 30)")
    p.add_argument("--out", default=str(ARTIFACTS / "bench-results.json"), help="where the JSON figures go")
    args = p.parse_args()
    plan = Plan()
    if args.quick:
        plan = Plan(warmup=2, sequential=10, burst=40, waiting_loops=300, waiting_budget=20, experiments=("local-steps",))
    if args.no_waiting:
        plan.waiting = False
    if args.no_experiments:
        plan.experiments, plan.eager, plan.server_tuning = (), False, False
    plan.waiting_loops = args.loops or plan.waiting_loops
    plan.only_waiting = args.only_waiting
    if args.experiments is not None:
        plan.experiments = tuple(e for e in args.experiments.split(";") if e)
    if args.waiting:
        plan.waiting_variants = tuple(WAITING_VARIANTS[name] for name in args.waiting.split(","))
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
