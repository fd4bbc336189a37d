"""`dev`: the whole stack on embedded defaults, in one terminal, until Ctrl-C or SIGTERM.

Temporal dev server (SQLite file under the data folder, UI on :8233), redis-server with AOF in the
data folder, N workers and the ingress as child processes with prefixed logs. State survives a
restart of the command. Without `LLM_API_KEY`, LLM calls go to the offline scripted server.
Payloads are encrypted as in production (a key generated into the data folder unless keys are
configured; `--no-encryption` turns it off) and the UI decrypts them through a codec server.

The children die with it, however it dies: Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop them
in order; SIGKILL reaches them through the kernel (executor/local_services.py). A second `dev` on the
same ports says which ports and processes are in the way, before starting anything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from adapters.settings import Settings
from adapters import encryption
from executor.local_services import Proc, free_port, listeners, start_redis, start_temporal
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
    if getattr(args, "codec_port", 0):
        ports["codec server"] = args.codec_port
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


@dataclass(frozen=True)
class CodecPlan:
    env: dict[str, str]  # what every child needs to encrypt and decrypt
    keys: str  # where the keys come from, for the banner
    port: int
    token: str

    @property
    def endpoint(self) -> str:
        """What the UI calls: the token is the path, as a browser cannot add a header (executor/codec_server.py)."""
        return f"http://127.0.0.1:{self.port}/{self.token}"


def _codec_plan(args: argparse.Namespace, settings: Settings, data: Path) -> CodecPlan | None:
    """Encryption as in production, on by default: the configured keys, else a key generated into
    the data folder on first start (kept, so the histories of earlier runs stay readable); and a
    codec server for the UI, whose endpoint carries a token made for this run (docs/security.md)."""
    if args.no_encryption:
        return None
    env: dict[str, str] = {}
    keys = "the configured keys"
    if not settings.encryption_keys.get_secret_value() and not settings.encryption_key_file:
        key_file = encryption.ensure_key_file(data / "encryption.keys", "dev")
        env["ENCRYPTION_KEY_FILE"] = str(key_file)
        keys = f"key file {key_file}"
    return CodecPlan(env, keys, args.codec_port or free_port(), secrets.token_urlsafe(24))


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
        codec = _codec_plan(args, settings, data)
        started.append(start_temporal(data / "temporal", port=args.temporal_port, ui_port=args.ui_port, codec_endpoint=codec and codec.endpoint))
        started.append(start_redis(data / "redis", port=args.redis_port))
        env = {
            "WORKER_BUILD_ID": "dev",  # one version across code edits, so a restart keeps its runs (docs/upgrades.md)
            **os.environ,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{args.temporal_port}",
            "REDIS_ADDR": f"127.0.0.1:{args.redis_port}",
            "PYTHONUNBUFFERED": "1",
        }
        # Offline when asked, or when the default provider needs a key and has none (Bedrock and
        # Vertex authenticate from the platform's environment: never second-guessed here).
        keyless = settings.llm_provider in ("anthropic", "openai") and not (settings.llm_key() or settings.openai_api_key.get_secret_value())
        if args.scripted_llm or keyless:
            llm = ScriptedLLM().start()
            # a key the log redaction cannot find in the model's name (it masks keys wherever they occur);
            # the scripted server speaks both Messages and Chat Completions: nodes may name either provider
            env.update(
                LLM_BASE_URL=llm.base_url, LLM_API_KEY="no-key-offline-model", LLM_MODEL="echo-offline",
                LLM_PROVIDER="anthropic", LLM_PROVIDERS="openai", OPENAI_BASE_URL=f"{llm.base_url}/v1", OPENAI_API_KEY="no-key-offline-model",
            )
            print(f"[dev] no LLM_API_KEY: LLM calls go to the offline scripted LLM at {llm.base_url} (model echo-offline)")
        if codec:
            env.update(codec.env)
            codec_env = {**env, "CODEC_SERVER_TOKEN": codec.token, "CODEC_SERVER_PORT": str(codec.port), "CODEC_SERVER_HOST": "127.0.0.1",
                         "CODEC_CORS_ORIGINS": f"http://127.0.0.1:{args.ui_port},http://localhost:{args.ui_port}"}
            started.append(Proc("codec", [sys.executable, "-m", "executor", "codec-server"], env=codec_env))
            print(f"[dev] payloads are encrypted ({codec.keys}); the UI decrypts them through the codec server on 127.0.0.1:{codec.port}")
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
