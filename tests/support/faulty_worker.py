"""`python -m tests.support.faulty_worker`: the worker process with fault points armed
(doubles/faults.py), for the tests that kill a worker between a step's work and its ack."""

from __future__ import annotations

import asyncio

from adapters import logs
from executor.cli import exit_now
from adapters.settings import Settings
from doubles.faults import DieAfter
from executor.worker import run_worker, stop_on_signals


async def main() -> None:
    settings = Settings.from_env()
    logs.setup(settings.log_level, "worker", secrets=settings.secret_values())
    stop = asyncio.Event()
    stop_on_signals(stop)
    await run_worker(settings, stop, interceptors=[DieAfter.from_env()])


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)
