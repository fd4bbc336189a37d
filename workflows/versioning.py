"""Changing workflow code in place: patches, for the changes Worker Deployment versioning cannot take.

Versioning (executor/deployment.py) keeps every run on the code that started it, so most changes
need nothing here. A patch is for the rest: a fix that must reach runs already in flight (pinned
runs never move), or a deployment run unversioned (`WORKER_VERSIONING=false`). Code that changes
the *commands* a run issues (docs/upgrades.md has the checklist) then keeps both paths:

    if versioning.patched(versioning.EXTRA_STEP):   # new runs, and runs that already took it
        await the_new_step()
    else:                                           # replaying a history from before the change
        await the_old_step()

Temporal records a marker the first time a run takes the new path, so replay takes the same path
again. Once no open run can be on the old path (every run started before the deploy has closed:
`executor status`, or a visibility query), the old branch goes and the call becomes
`versioning.deprecated(ID)` for one more release; after that the id can go too.

Every patch id is declared in PATCHES with what it changed, so a reviewer sees the live ones in
one place, and a typo in an id fails at once instead of silently taking the old path for ever.
"""

from __future__ import annotations

from temporalio import workflow

# The example (tests/support/upgraded_worker.py uses it): an agent loop that waits a moment
# before each model call. Existing histories have no such timer; `patched` keeps them replaying.
PAUSE_BEFORE_LLM = "pause-before-llm"

PATCHES: dict[str, str] = {
    PAUSE_BEFORE_LLM: "agent loop: a short timer before each LLM call (example in tests/support/upgraded_worker.py)",
}


def _declared(patch_id: str) -> str:
    if patch_id not in PATCHES:
        raise ValueError(f"unknown patch id {patch_id!r}: declare it in workflows/versioning.py PATCHES")
    return patch_id


def patched(patch_id: str) -> bool:
    """True: take the new path (a new run, or a replay of a run that took it); False: the run's
    history was written before the change, take the old path."""
    return workflow.patched(_declared(patch_id))


def deprecated(patch_id: str) -> None:
    """The old path is gone (no open run uses it): keeps the marker of runs that took the new
    one replaying. Remove it a release later."""
    workflow.deprecate_patch(_declared(patch_id))
