"""`dev`: the whole stack on embedded defaults, in one terminal, until Ctrl-C or SIGTERM.

Temporal dev server (SQLite file under the data folder, UI on :8233), redis-server with AOF in the
data folder, N workers and the ingress as child processes with prefixed logs. State survives a
restart of the command. Without `LLM_API_KEY`, LLM calls go to the offline scripted server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from executor.config import Settings
from executor.devstack import Proc, start_redis, start_temporal
from executor.scripted_llm import ScriptedLLM


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    data = Path(args.data_dir).resolve()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
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
        if args.scripted_llm or not settings.llm_api_key.get_secret_value():
            llm = ScriptedLLM().start()
            env.update(LLM_BASE_URL=llm.base_url, LLM_API_KEY="offline", LLM_MODEL="echo-offline")
            print(f"[dev] no LLM_API_KEY: LLM calls go to the offline scripted LLM at {llm.base_url} (model echo-offline)")
        for n in range(args.workers):
            worker_env = {**env, "WORKER_ID": f"{settings.worker_id}-w{n + 1}", "HEALTH_PORT": str(8081 + n), "METRICS_PORT": str(9464 + n)}
            started.append(Proc(f"worker-{n + 1}" if args.workers > 1 else "worker", [sys.executable, "-m", "executor", "worker"], env=worker_env))
        ingress_env = {**env, "WORKER_ID": f"{settings.worker_id}-ingress", "HEALTH_PORT": "8090", "METRICS_PORT": "9474"}
        started.append(Proc("ingress", [sys.executable, "-m", "executor", "ingress"], env=ingress_env))
        print(
            f"[dev] Temporal UI: http://127.0.0.1:{args.ui_port}  ·  Temporal: 127.0.0.1:{args.temporal_port}"
            f"  ·  Redis: 127.0.0.1:{args.redis_port}  ·  data: {data}\n"
            f"[dev] try: .venv/bin/python -m executor submit "
            "'{\"config\": {\"tool_name\": \"calculate\", \"tool_params\": {\"expression\": \"2*(3+4)\"}}}'\n"
            "[dev] health: http://127.0.0.1:8081/ready (worker), http://127.0.0.1:8090/ready (ingress); metrics on /metrics\n"
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
