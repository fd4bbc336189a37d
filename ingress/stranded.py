"""Nodes stranded on a worker version nobody serves: which versions have workers, and for how long not.

With Worker Deployment versioning a running node is pinned to the version that started it, and a
node not yet started by any worker waits for the deployment's current version. Stop a version's
workers before it drained (a Kubernetes `RollingUpdate`, `pip install -U` and a restart, a
`docker compose up --build` with a new build id) and those nodes wait for workers that no longer
exist: nothing fails, nothing reports. The watchdog (ingress/watchdog.py) asks here, once per pass,
which versions have had no worker for `STRANDED_AFTER` and reports and terminates their nodes.

Whether a version has workers is read from the task queue's pollers (DescribeTaskQueue, one call
per task type, as `executor status` does; works on every server with Worker Deployments). A poller
entry says when that worker last *started* a poll, and a live idle worker holds each poll open for
up to a minute, so a worker counts as present until `POLL_WINDOW` after its last poll. A worker
that stopped cleanly says so at once through its shutdown heartbeat (ListWorkers, servers 1.29+
with worker heartbeats; an older server lacks it and stopping is seen only after `POLL_WINDOW`).
The server forgets pollers some minutes after their last poll: from then on the watchdog's own
memory (`UnservedClock`) says since when the version has had none. Per pass: two DescribeTaskQueue,
one ListWorkers page, and two visibility queries (at most `STRANDED_PER_PASS` runs); the deployment
itself is described only when a node has waited `STRANDED_AFTER` for its first workflow task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingWorkflowTaskState, TaskQueueType, WorkerStatus, WorkerVersioningMode
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, DescribeWorkerDeploymentRequest, ListWorkersRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

# A live worker re-polls as soon as a poll returns, and the server holds an idle poll for about a
# minute (the SDK gives it 70 s): a worker whose last poll began this recently may still be waiting in it.
POLL_WINDOW = timedelta(seconds=90)
# A stopping worker's last poll can reach the server just after its shutdown heartbeat was stamped
# (measured: a few ms), and the stamp is the worker's clock: a poll this close counts as before it.
SHUTDOWN_SKEW = timedelta(seconds=10)
_STOPPED = {WorkerStatus.WORKER_STATUS_SHUTTING_DOWN, WorkerStatus.WORKER_STATUS_SHUTDOWN}
_NO_WORKER_LIST = {RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.INVALID_ARGUMENT}
WORKERS_PAGE = 1000  # worker records read per pass (one page)


@dataclass(frozen=True)
class Poller:
    build_id: str
    identity: str
    last_poll: datetime


def served_until(pollers: Iterable[Poller], stopped_at: dict[str, datetime]) -> dict[str, datetime]:
    """Build id -> until when some worker of it may be polling: a worker's last poll plus
    `POLL_WINDOW`, or the moment it said it stopped (its shutdown heartbeat, when that came after
    its last poll, within `SHUTDOWN_SKEW`; an older one belongs to an earlier process of the same
    identity)."""
    until: dict[str, datetime] = {}
    for poller in pollers:
        stop = stopped_at.get(poller.identity)
        end = stop if stop is not None and stop >= poller.last_poll - SHUTDOWN_SKEW else poller.last_poll + POLL_WINDOW
        until[poller.build_id] = max(end, until.get(poller.build_id, end))
    return until


@dataclass
class UnservedClock:
    """Since when each version has had no worker, across passes: the pollers' own times while the
    server lists them, then the first pass that saw none (the server forgets old pollers)."""

    since: dict[str, datetime] = field(default_factory=dict)

    def unserved_for(self, builds: Iterable[str], served: dict[str, datetime], now: datetime) -> dict[str, float]:
        """Seconds each of `builds` has been without a worker (0 when one may be polling)."""
        found = {}
        for build in builds:
            until = served.get(build)
            if until is not None and until > now:
                self.since.pop(build, None)
                found[build] = 0.0
                continue
            start = until if until is not None else self.since.get(build, now)
            self.since[build] = min(start, self.since.get(build, start))
            found[build] = (now - self.since[build]).total_seconds()
        for build in set(self.since) - set(found):  # retired versions: forget them
            del self.since[build]
        return found


async def current_version(client: Client, deployment_name: str) -> str | None:
    """The deployment's current build id; None when it has none (or does not exist)."""
    try:
        reply = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return reply.worker_deployment_info.routing_config.current_deployment_version.build_id or None


async def pollers(client: Client, task_queue: str, deployment_name: str) -> list[Poller]:
    """The versioned workers of `deployment_name` the server lists polling `task_queue`."""
    found = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        reply = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind)
        )
        for poller in reply.pollers:
            options = poller.deployment_options
            if options.worker_versioning_mode == WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED and options.deployment_name == deployment_name:
                found.append(Poller(options.build_id, poller.identity, poller.last_access_time.ToDatetime(tzinfo=UTC)))
    return found


async def stopped_workers(client: Client, task_queue: str) -> dict[str, datetime]:
    """Identity -> when it last said it was stopping (worker heartbeats); {} where the server has none."""
    try:
        reply = await client.workflow_service.list_workers(
            ListWorkersRequest(namespace=client.namespace, page_size=WORKERS_PAGE, query=f"TaskQueue = '{task_queue}'")
        )
    except RPCError as exc:
        if exc.status not in _NO_WORKER_LIST:
            raise
        return {}
    stopped: dict[str, datetime] = {}
    # `workers_info` (full heartbeats) is deprecated for `workers`, which lacks the heartbeat time we need.
    for info in reply.workers_info:
        beat = info.worker_heartbeat
        if beat.status in _STOPPED:
            at = beat.heartbeat_time.ToDatetime(tzinfo=UTC)
            stopped[beat.worker_identity] = max(at, stopped.get(beat.worker_identity, at))
    return stopped


async def served(client: Client, task_queue: str, deployment_name: str) -> dict[str, datetime]:
    """Build id -> until when a worker of that version may be polling `task_queue`."""
    return served_until(await pollers(client, task_queue, deployment_name), await stopped_workers(client, task_queue))


# -- what the node.failed says (pure) ----------------------------------------------------------------


def _others(deployment_name: str, build: str, served_now: Iterable[str], current: str | None) -> str:
    others = sorted(b for b in served_now if b != build)
    if not others:
        return "no version of the deployment has workers now"
    return "versions with workers now: " + ", ".join(f"{b}{' (current)' if b == current else ''}" for b in others)


def pinned_cause(deployment_name: str, build: str, seconds: float, served_now: Iterable[str], current: str | None) -> str:
    return (
        f"stranded on worker version {deployment_name}:{build}: pinned to it, and no worker of that version has polled for "
        f"{seconds:.0f}s ({_others(deployment_name, build, served_now, current)}), terminated by the watchdog. Its workers were "
        f"stopped before it drained: start a new version beside the old one, make it current, and stop the old one only once "
        f"`executor status` shows it holds 0 open nodes (docs/upgrades.md section 2). Re-run this node with `executor rerun`"
    )


def unstarted_cause(deployment_name: str, build: str, seconds: float, served_now: Iterable[str], current: str | None) -> str:
    fix = next(iter(sorted(b for b in served_now if b != build)), "<build id>")
    return (
        f"no worker for the current version {deployment_name}:{build}: new nodes go to it, and none of its workers has polled for "
        f"{seconds:.0f}s ({_others(deployment_name, build, served_now, current)}), terminated by the watchdog. Make a version that "
        f"has workers current: `temporal worker deployment set-current-version --deployment-name {deployment_name} --build-id {fix} "
        f"--yes` (docs/upgrades.md section 2), then re-run this node with `executor rerun`"
    )


def listed_build(search_attributes: Mapping[str, Any], deployment_name: str) -> str | None:
    """The build id a listed run last ran on, from its `TemporalWorkerDeploymentVersion` search
    attribute (`<deployment>:<build id>`; visibility results carry no versioning info)."""
    values = search_attributes.get("TemporalWorkerDeploymentVersion") or []
    value = values[0] if isinstance(values, list) and values else values
    prefix = f"{deployment_name}:"
    return value[len(prefix) :] if isinstance(value, str) and value.startswith(prefix) and len(value) > len(prefix) else None


def effective_build(versioning_info: object) -> str | None:
    """The build id a run's tasks go to now, from DescribeWorkflowExecution's versioning info: an
    operator's pinned override first, else the version that ran it; None when it is not started
    yet, or moving to another version (a transition in progress)."""
    info = versioning_info
    if info.HasField("version_transition"):  # type: ignore[attr-defined]
        return None
    override = info.versioning_override  # type: ignore[attr-defined]
    if override.HasField("pinned") and override.pinned.version.build_id:
        return str(override.pinned.version.build_id)
    return str(info.deployment_version.build_id) or None  # type: ignore[attr-defined]


def waiting_since(described: object, before: datetime) -> bool:
    """Whether a DescribeWorkflowExecution reply shows a workflow task scheduled before `before`
    and still not picked up by any worker."""
    task = described.pending_workflow_task  # type: ignore[attr-defined]
    if not described.HasField("pending_workflow_task") or task.state != PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED:  # type: ignore[attr-defined]
        return False
    return bool(task.scheduled_time.ToDatetime(tzinfo=UTC) <= before)
