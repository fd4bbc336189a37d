"""`dago-executor` (or `python -m executor`): worker, ingress, dev, submit.

Configuration errors print one readable line and exit 2; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from temporalio.service import RPCError

from adapters import logs
from adapters.settings import Settings
from core.errors import ContractError
from core.work_item import recover_ids
from executor.operate import EXIT_FAILED

EXIT_USAGE = 2
EXIT_TIMEOUT = 3


def _run_service(kind: str, settings: Settings) -> int:
    from executor.worker import stop_on_signals

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        if kind == "worker":
            from executor.worker import run_worker

            await run_worker(settings, stop)
        else:
            from executor.ingress_service import run_ingress

            await run_ingress(settings, stop)

    asyncio.run(main())
    return 0


def _load_item(text: str) -> dict[str, Any]:
    """A work item from a file path, `-` (stdin) or inline JSON; ids filled in when absent."""
    if text == "-":
        raw = sys.stdin.read()
    elif text.lstrip().startswith("{"):
        raw = text
    else:
        raw = Path(text).read_text()
    item = json.loads(raw)
    if not isinstance(item, dict):
        raise ContractError("submit: the work item must be a JSON object")
    if "data" not in item or "config" in item:  # executor envelope (1a)
        item.setdefault("graph_id", f"cli-{uuid.uuid4().hex[:8]}")
        item.setdefault("node_id", "node")
        item.setdefault("node_type", "executor")
    return item


async def submit(settings: Settings, item: dict[str, Any], stream: str, timeout: float) -> int:
    from adapters import redis_client
    from adapters import result_stream

    redis = redis_client.connect(settings)
    graph_id, node_id = recover_ids(item)
    try:
        cursor = await result_stream.at_end(redis, [settings.completed_stream, settings.failed_stream])
        entry = await redis.xadd(stream, {"data": json.dumps(item)})
        print(f"submitted {stream} {entry.decode()} (graph {graph_id}, node {node_id}); waiting for the result", file=sys.stderr)
        try:
            async with asyncio.timeout(timeout):
                async for _, event in result_stream.follow(redis, cursor):
                    if event.get("graph_id") == graph_id and event.get("node_id") == node_id:
                        print(json.dumps(event, indent=2, ensure_ascii=False))
                        failed = event.get("type") == "node.failed" or "error" in (event.get("data") or {})
                        return EXIT_FAILED if failed else 0
        except TimeoutError:
            pass
        print(f"no result event within {timeout:.0f}s", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        await redis.aclose()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dago-executor", description="Durable node executor for the DA Orchestrator")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a worker: NodeWorkflow and its activities")
    sub.add_parser("ingress", help="run the ingress: executor.work entries become workflows")
    sub.add_parser("codec-server", help="serve Temporal's remote codec (/decode, /encode) for the Web UI: CODEC_SERVER_TOKEN, CODEC_CORS_ORIGINS")
    dev = sub.add_parser("dev", help="the whole dev stack: Temporal dev server, Redis, worker, ingress")
    dev.add_argument("--data-dir", default=os.environ.get("DATA_DIR", ".data"), help="where state survives restarts")
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.add_argument("--redis-port", type=int, default=6379)
    dev.add_argument("--workers", type=int, default=1, help="worker processes to run")
    dev.add_argument("--health-port", type=int, default=8081, help="first worker's /health port (the next workers count up)")
    dev.add_argument("--metrics-port", type=int, default=9464, help="first worker's Prometheus port (likewise)")
    dev.add_argument("--ingress-health-port", type=int, default=8090)
    dev.add_argument("--ingress-metrics-port", type=int, default=9474)
    dev.add_argument("--codec-port", type=int, default=0, help="the codec server's port (default: a free one)")
    dev.add_argument("--no-encryption", action="store_true", help="plain payloads (default: encrypted, key in the data folder)")
    dev.add_argument("--scripted-llm", action="store_true", help="answer LLM calls offline with the scripted server (echo models)")
    st = sub.add_parser("status", help="Temporal and Redis reachability, streams, pending, lag, dead letters, running nodes")
    st.add_argument("--json", action="store_true")
    t = sub.add_parser("tail", help="follow result events")
    t.add_argument("--from-start", action="store_true", help="print the existing events first")
    t.add_argument("--count", type=int, default=None, help="stop after this many events")
    t.add_argument("--json", action="store_true")
    sh = sub.add_parser("show", help="a node's state, progress and result")
    sh.add_argument("workflow_id")
    c = sub.add_parser("cancel", help="cancel a node (it reports node.failed)")
    c.add_argument("workflow_id")
    dl = sub.add_parser("dead-letters", help="list dead-lettered entries, or requeue them after a fix")
    dl.add_argument("--requeue", nargs="*", default=[], metavar="ID", help="dead-letter entry ids to put back")
    dl.add_argument("--all", action="store_true", help="requeue every dead letter")
    rr = sub.add_parser("rerun", help="run a node again whose workflow ended without a usable result (terminated, timed out, failed)")
    rr.add_argument("workflow_id")
    rr.add_argument("--force", action="store_true", help="also a node that completed or was cancelled (a second result event)")
    a = sub.add_parser("approvals", help="list tool calls of an agent node waiting for approval")
    a.add_argument("workflow_id")
    for verb in ("approve", "reject"):
        d = sub.add_parser(verb, help=f"{verb} a tool call waiting for approval")
        d.add_argument("workflow_id")
        d.add_argument("call_id")
        d.add_argument("--reason", default=None)
        d.add_argument(
            "--by", default=os.environ.get("USER"),
            help="the approver to record and check against APPROVERS (default: $USER; the client's Temporal identity is recorded beside it)",
        )
    s = sub.add_parser("submit", help="put a work item on the stream and wait for its result event")
    s.add_argument("item", help="a JSON file, - for stdin, or inline JSON")
    s.add_argument("--stream", default=None, help="work stream (default: the first of WORK_STREAMS)")
    s.add_argument("--timeout", type=float, default=120.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.setup(settings.log_level, args.command, secrets=settings.secret_values())
        if args.command in ("worker", "ingress"):
            return _run_service(args.command, settings)
        if args.command == "codec-server":
            from executor.codec_server import serve

            asyncio.run(serve(settings))
            return 0
        if args.command == "dev":
            from executor.dev import run_dev

            return run_dev(args, settings)
        if args.command in ("status", "tail", "show", "cancel", "dead-letters", "rerun", "approvals", "approve", "reject"):
            from executor import operate

            if args.command == "status":
                return asyncio.run(operate.status(settings, args.json))
            if args.command == "tail":
                return asyncio.run(operate.tail(settings, args.from_start, args.count, args.json))
            if args.command == "show":
                return asyncio.run(operate.show(settings, args.workflow_id))
            if args.command == "cancel":
                return asyncio.run(operate.cancel(settings, args.workflow_id))
            if args.command == "dead-letters":
                return asyncio.run(operate.dead_letters(settings, args.requeue, args.all))
            if args.command == "rerun":
                return asyncio.run(operate.rerun(settings, args.workflow_id, args.force))

            if args.command == "approvals":
                return asyncio.run(operate.approvals(settings, args.workflow_id))
            approve = args.command == "approve"
            return asyncio.run(operate.decide(settings, args.workflow_id, args.call_id, approve, args.reason, args.by))
        item = _load_item(args.item)
        return asyncio.run(submit(settings, item, args.stream or settings.work_streams[0], args.timeout))
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RedisError, RPCError, RuntimeError) as exc:  # a service unreachable: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def exit_now(code: int) -> None:
    """Exit without interpreter finalisation: temporalio's native threads can abort a finalising
    interpreter (sdk-python#300) and turn a clean run into exit code 134."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())


def run() -> None:
    """Console-script entry point."""
    exit_now(main())
