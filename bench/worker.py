"""Scratch experiments on the worker, applied in this process only: `python -m bench.worker worker`
with `BENCH_PATCHES` (comma-separated), then the unchanged `executor` worker runs.

  activities=N          Worker(max_concurrent_activities=N)          (temporalio default 100)
  wftasks=N             Worker(max_concurrent_workflow_tasks=N)      (default 100)
  cache=N               Worker(max_cached_workflows=N)               (default 1000)
  pollers=N             Worker(max_concurrent_*_task_polls=N)        (default 5)
  llm-connections=N     anthropic client pool max_connections=N      (SDK default 1000)
  unsandboxed           workflow_runner=UnsandboxedWorkflowRunner()
  local-steps           resolve_node and emit_result as local activities (bench/local_steps.py)
  no-search-attributes  the workflow sets no search attributes (as if they were not registered)
  heartbeat=S           activities heartbeat every S seconds while they wait (ours: 2)

Nothing here changes a file of the project; it is how the benchmark measures what a core change
would buy before anyone makes it.
"""

from __future__ import annotations

import os
from typing import Any

WORKER_OPTIONS = {
    "activities": "max_concurrent_activities",
    "wftasks": "max_concurrent_workflow_tasks",
    "cache": "max_cached_workflows",
}


def parse(spec: str) -> dict[str, str]:
    patches = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        patches[name] = value
    return patches


def apply(patches: dict[str, str]) -> None:
    import executor.worker as worker_module
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    options: dict[str, Any] = {WORKER_OPTIONS[k]: int(v) for k, v in patches.items() if k in WORKER_OPTIONS}
    if "pollers" in patches:
        options["max_concurrent_workflow_task_polls"] = int(patches["pollers"])
        options["max_concurrent_activity_task_polls"] = int(patches["pollers"])
    if "unsandboxed" in patches:
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    if "local-steps" in patches:
        from bench.local_steps import LocalStepsNodeWorkflow

        worker_module.NodeWorkflow = LocalStepsNodeWorkflow  # type: ignore[misc]
    if "no-search-attributes" in patches:
        async def not_registered(client: Any, namespace: str) -> bool:
            return False

        worker_module.search_attributes.registered = not_registered  # type: ignore[assignment]
    if "heartbeat" in patches:
        from activities import heartbeat

        heartbeat.heartbeating.__wrapped__.__defaults__ = (float(patches["heartbeat"]),)  # type: ignore[attr-defined]
    if "llm-connections" in patches:
        import anthropic
        import httpx2

        from executor.config import Settings

        limit = int(patches["llm-connections"])

        def build_client(settings: Settings) -> anthropic.AsyncAnthropic:
            return anthropic.AsyncAnthropic(
                api_key=settings.llm_api_key.get_secret_value() or "unset",
                base_url=settings.llm_base_url or None,
                max_retries=0,
                timeout=settings.llm_timeout,
                http_client=anthropic.DefaultAsyncHttpxClient(
                    limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit)
                ),
            )

        worker_module.build_client = build_client  # type: ignore[assignment]

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
