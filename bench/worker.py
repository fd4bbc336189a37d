"""Scratch experiments on the worker (or the ingress), applied in this process only: `python -m
bench.worker worker` with `BENCH_PATCHES` (comma-separated), then the unchanged `executor` worker
runs; `python -m bench.worker ingress` the same for the ingress.

  wftasks=N             Worker(max_concurrent_workflow_tasks=N)      (default 100)
  pollers=N             Worker(max_concurrent_*_task_polls=N)        (default 5)
  unsandboxed           workflow_runner=UnsandboxedWorkflowRunner()
  no-search-attributes  the workflow sets no search attributes (as if they were not registered)
  heartbeat=S           activities heartbeat every S seconds while they wait (ours: 2)
  no-transcripts        no transcript store: every call_llm input carries the whole conversation,
                        as before transcripts (the long-loop row's "before", bench/long_loop.py)
  attributes-by-upsert  (the ingress: `ingress:attributes-by-upsert` in an experiment) start
                        workflows without search attributes, so the workflow upserts them all
                        after resolving, as before 0.2

What the executor can set by environment is set that way instead (`WORKER_MAX_ACTIVITIES`,
`WORKER_MAX_CACHED_WORKFLOWS`, `LLM_MAX_CONNECTIONS` on the worker, `LOCAL_STEPS` on the ingress).
Nothing here changes a file of the project; it is how the benchmark measures what a core change
would buy before anyone makes it.
"""

from __future__ import annotations

import os
from typing import Any

WORKER_OPTIONS = {"wftasks": "max_concurrent_workflow_tasks"}


def parse(spec: str) -> dict[str, str]:
    patches = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        patches[name] = value
    return patches


KNOWN = {"wftasks", "pollers", "unsandboxed", "no-search-attributes", "heartbeat", "no-transcripts", "attributes-by-upsert"}


def apply(patches: dict[str, str]) -> None:
    unknown = set(patches) - KNOWN
    if unknown:
        raise SystemExit(f"bench worker: unknown BENCH_PATCHES {sorted(unknown)} (set worker options by environment)")
    import executor.worker as worker_module
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    options: dict[str, Any] = {WORKER_OPTIONS[k]: int(v) for k, v in patches.items() if k in WORKER_OPTIONS}
    if "pollers" in patches:
        options["max_concurrent_workflow_task_polls"] = int(patches["pollers"])
        options["max_concurrent_activity_task_polls"] = int(patches["pollers"])
    if "unsandboxed" in patches:
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    if "no-search-attributes" in patches or "attributes-by-upsert" in patches:
        async def not_registered(client: Any, namespace: str) -> bool:
            return False

        worker_module.search_attributes.registered = not_registered  # type: ignore[assignment]
    if "heartbeat" in patches:
        from activities import heartbeat

        heartbeat.heartbeating.__wrapped__.__defaults__ = (float(patches["heartbeat"]),)  # type: ignore[attr-defined]

    if "no-transcripts" in patches:
        worker_module.TranscriptStore = lambda *args, **kwargs: None  # type: ignore[assignment,misc]

    def tuned_worker(*args: Any, **kwargs: Any) -> Worker:
        return Worker(*args, **{**kwargs, **options})

    worker_module.Worker = tuned_worker  # type: ignore[misc,assignment]


def main() -> None:
    from executor.cli import exit_now, main as executor_main

    patches = parse(os.environ.get("BENCH_PATCHES", ""))
    apply(patches)
    print(f"bench worker patches: {patches}", flush=True)
    exit_now(executor_main())


if __name__ == "__main__":
    main()
