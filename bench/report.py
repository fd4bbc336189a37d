"""Figures: percentiles, the machine, the table, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan"),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        temporal = subprocess.run(
            [str(Path(sys.executable).parent / "temporal"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        temporal = "unknown"
    import temporalio

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        "temporal_cli": temporal,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measured workload: throughput, latency, and the ratios the targets use.

    Ours is compared with the bare ceiling of the same server (tool nodes: the same activity
    plan) and with the direct in-process run of the same node kind (the durability tax).
    """
    def entry(key: str, row: dict[str, Any], bare: dict[str, Any] | None, direct: dict[str, Any] | None) -> dict[str, Any]:
        p50 = row.get("low_load", {}).get("p50_ms")
        out = {
            "workload": key,
            "label": row["label"],
            "throughput_wf_s": row.get("throughput_wf_s"),
            "p50_ms": p50,
            "p95_ms": row.get("low_load", {}).get("p95_ms"),
            "throughput_vs_bare": None,
            "p50_vs_bare": None,
            "tax_throughput": None,
            "tax_p50": None,
        }
        if bare:
            # latency like for like: the bare workflow until its emit step is done (ours is read
            # back from the stream as soon as its emit step wrote it)
            bare_low = bare.get("low_load_to_emit") or bare.get("low_load", {})
            out["throughput_vs_bare"] = ratio(row.get("throughput_wf_s"), bare.get("throughput_wf_s"))
            out["p50_vs_bare"] = ratio(p50, bare_low.get("p50_ms"))
        if direct:
            out["tax_throughput"] = ratio(direct.get("throughput_wf_s"), row.get("throughput_wf_s"))
            out["tax_p50"] = ratio(p50, direct.get("low_load", {}).get("p50_ms"))
        return out

    out = []
    direct = results.get("direct", {})
    bare = results.get("bare")
    if bare:
        out.append(entry("bare", bare, None, None))
        if "low_load_to_emit" in bare:
            to_emit = {"label": bare["label"] + ", start → emit done", "low_load": bare["low_load_to_emit"]}
            out.append(entry("bare_to_emit", to_emit, None, None))
    for key, row in ordered(results):
        if row.get("group") == "direct":
            out.append(entry(key, row, None, None))
        else:
            out.append(entry(key, row, bare if row.get("kind") == "tool" else None, direct.get(row.get("kind", ""))))
    return out


GROUPS = ("ours", "regular", "direct", "experiment")


def ordered(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Ours, ours + LOCAL_STEPS=false, direct, then the experiments."""
    items = list(results.get("workloads", {}).items()) + [(f"direct_{k}", v) for k, v in results.get("direct", {}).items()]
    return sorted(items, key=lambda kv: GROUPS.index(kv[1].get("group")) if kv[1].get("group") in GROUPS else len(GROUPS))


def table(results: dict[str, Any]) -> str:
    header = (
        "| workload | throughput wf/s | p50 ms | p95 ms | throughput ÷ bare | p50 ÷ bare "
        "| durability tax: direct wf/s ÷ ours | durability tax: ours p50 ÷ direct |"
    )
    lines = [header, "| " + " | ".join(["---"] * 8) + " |"]
    for r in rows(results):
        lines.append(
            f"| {r['label']} | {fmt(r['throughput_wf_s'])} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} "
            f"| {fmt(r['throughput_vs_bare'], 2)} | {fmt(r['p50_vs_bare'], 2)} "
            f"| {fmt(r['tax_throughput'], 1)} | {fmt(r['tax_p50'], 1)} |"
        )
    return "\n".join(lines)


def per_node_table(results: dict[str, Any]) -> str:
    """What one node leaves behind, for the capacity model: its history (one low-load node) and the
    Redis commands per node during the burst (`INFO commandstats`; the bench's own XADD and
    result-stream XREADs, about 2 per node, included)."""
    lines = [
        "| workload (per node) | history events | history bytes | workflow tasks | activities | markers | Redis commands | of which XADD / XREAD (the bench's share) |",
        "| " + " | ".join(["---"] * 8) + " |",
    ]
    for _, r in ordered(results):
        h, redis = r.get("history"), r.get("redis_commands_per_node")
        if not h or not redis:
            continue
        lines.append(
            f"| {r['label']} | {h['events']} | {h['bytes']:,} | {h['workflow_tasks']} | {h['activities']} | {h['markers']} "
            f"| {fmt(redis.get('total'))} | {fmt(redis.get('xadd', 0.0))} / {fmt(redis.get('xread', 0.0))} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def waiting_table(results: dict[str, Any]) -> str:
    lines = [
        "| worker settings | loops submitted | workflows started | open | LLM calls in flight (max) | worker RSS idle MiB "
        "| worker RSS loaded MiB | RSS per in-flight call KiB | RSS per open loop KiB | worker CPU once settled | seconds to the most in flight |",
        "| " + " | ".join(["---"] * 11) + " |",
    ]
    for run in results.get("waiting", []):
        lines.append(
            f"| {run['label']} | {run['submitted']} | {fmt(run.get('started'))} | {fmt(run.get('open_workflows'))} | {run['max_in_flight']} "
            f"| {fmt(run['rss_idle_mib'])} | {fmt(run['rss_loaded_mib'])} | {fmt(run.get('rss_per_loop_kib'))} "
            f"| {fmt(run.get('rss_per_open_loop_kib'))} "
            f"| {fmt(run.get('cpu_percent_waiting'), 0)}% | {fmt(run.get('seconds_to_plateau'))} |"
        )
    return "\n".join(lines)


CPU_COLUMNS = ("Temporal server", "worker", "ingress", "Redis", "LLM server", "bench client")


def _cpu_column(process: str) -> str:
    if process.startswith("temporal"):
        return "Temporal server"
    if "worker" in process:
        return "worker"
    if process.startswith("ingress"):
        return "ingress"
    return {"redis": "Redis", "llm": "LLM server"}.get(process, "bench client")


def cpu_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """CPU ms per node by process during the burst, and what that allows on this machine's cores
    if nothing else ran: the figure other load on the machine disturbs least."""
    sources = [("bare", results.get("bare")), *ordered(results)]
    cores = results.get("machine", {}).get("nproc") or 1
    out = []
    for key, row in sources:
        if not row or "cpu_ms_per_node" not in row:
            continue
        cols = dict.fromkeys(CPU_COLUMNS, 0.0)
        for process, ms in row["cpu_ms_per_node"].items():
            cols[_cpu_column(process)] += ms
        total = sum(cols.values())
        out.append({
            "workload": key, "label": row["label"], **{k: round(v, 2) for k, v in cols.items()}, "total": round(total, 2),
            "capacity_wf_s": round(cores * 1000 / total, 1) if total else None,
            "others_cores": row.get("cores_during_burst", {}).get("others", 0.0),
        })
    return out


def cpu_table(results: dict[str, Any]) -> str:
    cores = results.get("machine", {}).get("nproc") or 1
    lines = [
        "| workload (CPU ms per node during the burst) | " + " | ".join(CPU_COLUMNS) + f" | total | CPU-bound capacity on {cores} cores, wf/s | other load, cores |",
        "| " + " | ".join(["---"] * (len(CPU_COLUMNS) + 4)) + " |",
    ]
    for r in cpu_rows(results):
        cells = " | ".join(fmt(r[c]) for c in CPU_COLUMNS)
        lines.append(f"| {r['label']} | {cells} | {fmt(r['total'])} | {fmt(r['capacity_wf_s'])} | {fmt(r['others_cores'], 2)} |")
    return "\n".join(lines)


def eager_lines(results: dict[str, Any]) -> str:
    lines = []
    for server, e in results.get("eager", {}).items():
        lines.append(
            f"bare workflow, worker in the client's process ({server}): p50 {e['not_eager']['low_load']['p50_ms']} ms without eager start, "
            f"{e['eager']['low_load']['p50_ms']} ms with request_eager_start=True ({e['eager']['eagerly_started']}/{e['eager']['runs']} started eagerly)"
        )
    return "\n".join(lines)


def stock_lines(results: dict[str, Any]) -> str:
    """The stock dev server (no dynamic config), at low load, beside the dev server as shipped."""
    stock = results.get("stock_server")
    if not stock:
        return ""
    bare, ours = stock["bare"], stock["ours_tool"]
    shipped_bare, shipped_ours = results.get("bare", {}), results.get("workloads", {}).get("ours_tool", {})

    def p50(row: dict[str, Any], key: str = "low_load") -> Any:
        return row.get(key, {}).get("p50_ms")

    lines = [
        "| low load, p50 ms | bare: result | bare: start → emit done | ours: tool node | ours ÷ bare to emit |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, b, o in (("stock dev server", bare, ours), ("dev server as shipped", shipped_bare, shipped_ours)):
        lines.append(
            f"| {name} | {fmt(p50(b))} | {fmt(p50(b, 'low_load_to_emit'))} | {fmt(p50(o))} | {fmt(ratio(p50(o), p50(b, 'low_load_to_emit')), 2)} |"
        )
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {**results, "table": rows(results), "cpu_table": cpu_rows(results)}
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
