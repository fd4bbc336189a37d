"""`python -m tests.support.upgraded_worker`: the worker process with version 2 of NodeWorkflow,
whose agent loop issues one more command per iteration (tests/support/upgraded_workflows.py).
`UPGRADE_PATCHED=true` hosts the same change behind `workflows.versioning.patched`."""

from __future__ import annotations

import asyncio
import os

from adapters import logs
from adapters.settings import Settings
from executor.cli import exit_now
from executor.worker import run_worker, stop_on_signals
from tests.support.upgraded_workflows import PatchedUpgrade, UnguardedUpgrade


async def main() -> None:
    settings = Settings.from_env()
    logs.setup(settings.log_level, "worker", secrets=settings.secret_values())
    stop = asyncio.Event()
    stop_on_signals(stop)
    variant = PatchedUpgrade if os.environ.get("UPGRADE_PATCHED") == "true" else UnguardedUpgrade
    await run_worker(settings, stop, workflows=[variant])


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)
