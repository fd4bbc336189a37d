"""`dev`: the whole stack on embedded defaults, in one terminal, until Ctrl-C or SIGTERM.

Temporal dev server (SQLite file under the data folder, UI on :8233), redis-server with AOF in the
data folder, N workers and the ingress as child processes with prefixed logs. State survives a
restart of the command. Without `LLM_API_KEY`, LLM calls go to the offline scripted server.

The children die with it, however it dies: Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop them
in order; SIGKILL reaches them through the kernel (executor/local_services.py). A second `dev` on the
same ports says which ports and processes are in the way, before starting anything.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from adapters.settings import Settings
from executor.local_services import Proc, listeners, start_redis, start_temporal
from doubles.scripted_llm import ScriptedLLM


EXIT_BUSY = 1


def planned_ports(args: argparse.Namespace) -> dict[str, int]:
    """Every port the stack will listen on, by what listens there."""
    ports = {"temporal": args.temporal_port, "temporal UI": args.ui_port, "redis": args.redis_port}
    for n in range(args.workers):
        ports[f"worker-{n + 1} health"] = args.health_port + n
        ports[f"worker-{n + 1} metrics"] = args.metrics_port + n
    ports["ingress health"] = args.ingress_health_port
    ports["ingress metrics"] = args.ingress_metrics_port
    return ports


def busy_ports(args: argparse.Namespace) -> str | None:
    """One line naming what is in the way, or None when every port is free."""
    ports = planned_ports(args)
    busy = listeners(list(ports.values()))
    if not busy:
        return None
    names = {port: name for name, port in ports.items()}
    what = ", ".join(f"{port} ({names[port]}{': ' + who if who else ''})" for port, who in sorted(busy.items()))
    return f"[dev] already running, or ports taken: {what}; stop that first or choose other ports (dev --help)"


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    data = Path(args.data_dir).resolve()
    in_the_way = busy_ports(args)
    if in_the_way:
        print(in_the_way, file=sys.stderr, flush=True)
        return EXIT_BUSY
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    started: list[Proc] = []
    llm: ScriptedLLM | None = None
    try:
        started.append(start_temporal(data / "temporal", port=args.temporal_port, ui_port=args.ui_port))
        started.append(start_redis(data / "redis", port=args.redis_port))
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{args.temporal_port}",
            "REDIS_ADDR": f"127.0.0.1:{args.redis_port}",
            "PYTHONUNBUFFERED": "1",
        }
        if args.scripted_llm or not settings.llm_key():
            llm = ScriptedLLM().start()
            # a key the log redaction cannot find in the model's name (it masks keys wherever they occur)
            env.update(LLM_BASE_URL=llm.base_url, LLM_API_KEY="no-key-offline-model", LLM_MODEL="echo-offline")
            print(f"[dev] no LLM_API_KEY: LLM calls go to the offline scripted LLM at {llm.base_url} (model echo-offline)")
        ports = planned_ports(args)
        for n in range(args.workers):
            worker_env = {
                **env, "WORKER_ID": f"{settings.worker_id}-w{n + 1}",
                "HEALTH_PORT": str(ports[f"worker-{n + 1} health"]), "METRICS_PORT": str(ports[f"worker-{n + 1} metrics"]),
            }
            started.append(Proc(f"worker-{n + 1}" if args.workers > 1 else "worker", [sys.executable, "-m", "executor", "worker"], env=worker_env))
        ingress_env = {
            **env, "WORKER_ID": f"{settings.worker_id}-ingress",
            "HEALTH_PORT": str(ports["ingress health"]), "METRICS_PORT": str(ports["ingress metrics"]),
        }
        started.append(Proc("ingress", [sys.executable, "-m", "executor", "ingress"], env=ingress_env))
        print(
            f"[dev] Temporal UI: http://127.0.0.1:{args.ui_port}  ·  Temporal: 127.0.0.1:{args.temporal_port}"
            f"  ·  Redis: 127.0.0.1:{args.redis_port}  ·  data: {data}\n"
            f"[dev] try: .venv/bin/python -m executor submit "
            "'{\"config\": {\"tool_name\": \"calculate\", \"tool_params\": {\"expression\": \"2*(3+4)\"}}}'\n"
            f"[dev] health: http://127.0.0.1:{args.health_port}/ready (worker), "
            f"http://127.0.0.1:{ports['ingress health']}/ready (ingress); metrics on /metrics\n"
            "[dev] Ctrl-C stops everything",
            flush=True,
        )
        while not stop.wait(1.0):
            dead = [p for p in started if not p.alive()]
            if dead:
                print(f"[dev] {dead[0].name} exited with {dead[0].popen.returncode}; stopping", flush=True)
                return 1
        return 0
    finally:
        for proc in reversed(started):  # ingress, workers, then Redis, then Temporal
            proc.stop()
        if llm is not None:
            llm.stop()
        print("[dev] stopped", flush=True)
