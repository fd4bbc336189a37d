"""How workflow code calls its steps: by reference to the activity method, with the options of its
kind (workflows/policies.py), as a local or a regular activity, decided here and nowhere else.

A reference (`LlmActivities.call_llm`) gives the type checker and "go to definition" the call, and
the result type comes from the method's signature. The activity's registered name is what the
history records, so renaming a method never breaks a running workflow; renaming its
`@activity.defn(name=…)` would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow

from workflows.policies import StepOptions

R = TypeVar("R")


def start(
    step: Callable[[Any, Any], Awaitable[R]], arg: Any, options: StepOptions, *, summary: str, local: bool = False
) -> workflow.ActivityHandle[R]:
    """Schedule one step. Local steps (`LOCAL_STEPS`: resolve and describe_tools) run in the
    workflow's own worker without a round trip through the server; everything else is a regular
    activity. A local activity has no heartbeat: the workflow task it runs in is its liveness."""
    if local:
        local_options = {k: v for k, v in options.items() if k != "heartbeat_timeout"}
        return workflow.start_local_activity_method(step, arg, summary=summary, **local_options)  # type: ignore[arg-type]
    return workflow.start_activity_method(step, arg, summary=summary, **options)  # type: ignore[arg-type]


async def run(
    step: Callable[[Any, Any], Awaitable[R]], arg: Any, options: StepOptions, *, summary: str, local: bool = False
) -> R:
    """Run one step to its result (see `start`)."""
    return await start(step, arg, options, summary=summary, local=local)
