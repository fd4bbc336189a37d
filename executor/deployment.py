"""Worker Deployment versioning: which code version a worker is, and which version gets new work.

A node may run for days (approvals, slow tools). With versioning on, every worker declares a
Worker Deployment (`WORKER_DEPLOYMENT_NAME`) and a build id (`WORKER_BUILD_ID`, by default the
package version plus a hash of our source), and the server routes: a node workflow stays pinned to
the version that started it (NodeWorkflow is PINNED), new nodes go to the deployment's *current*
version, and a long agent loop moves to the current version when it continues as new (a fresh run
replays nothing old). So old and new workers can poll one task queue during a rollout without any
in-flight run replaying on code that did not write its history (docs/upgrades.md).

A versioned worker only gets tasks once its version is current (or ramping). A deployment that
has no current version yet (a first deploy, `make run`, a test stack) would never run anything,
so by default (`WORKER_BECOME_CURRENT=if-none`) a worker makes its own version current when the
deployment has none; a rollout of a second version sets current explicitly (`never` makes that
the only way).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType, WorkerDeploymentVersionStatus, WorkerVersioningMode
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from adapters.settings import Settings
from ingress import stranded

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
# The code a worker runs: a change to any of it is a new version (activities of a pinned run go
# to its version's workers too, so not only the workflow code counts).
SOURCE_PACKAGES = ("core", "adapters", "activities", "workflows", "executor", "ingress")
DISTRIBUTION = "dago-node-executor"


def source_hash(root: Path = ROOT) -> str:
    """sha256 over our packages' Python files (paths and bytes), in a stable order."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def default_build_id(root: Path = ROOT) -> str:
    """`<package version>-<12 hex of the source hash>`, e.g. `0.1.0-3f9c2a1b7d10`."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "0"
    return f"{version}-{source_hash(root)[:12]}"


def build_id(settings: Settings) -> str:
    return settings.worker_build_id or default_build_id()


def worker_version(settings: Settings) -> WorkerDeploymentVersion | None:
    """This worker's version; None when versioning is off (`WORKER_VERSIONING=false`)."""
    if not settings.worker_versioning:
        return None
    return WorkerDeploymentVersion(deployment_name=settings.worker_deployment_name, build_id=build_id(settings))


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    version = worker_version(settings)
    if version is None:
        return None
    return WorkerDeploymentConfig(version=version, use_worker_versioning=True, default_versioning_behavior=VersioningBehavior.PINNED)


# Answers that a retry cannot change: the request or the caller is wrong, or the server has no
# Worker Deployments (older than 1.28: WORKER_VERSIONING=false, docs/upgrades.md).
_REFUSED = {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.UNIMPLEMENTED}
# The version is not known yet, or the deployment is busy: retried at the usual pace.
_NOT_YET = {RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED, RPCStatusCode.RESOURCE_EXHAUSTED}


async def become_current_if_none(client: Client, version: WorkerDeploymentVersion, stop: asyncio.Event, poll: float = 0.5) -> str:
    """Make `version` current when its deployment has no current version; returns the build id
    that is current in the end. The server learns of a version from its first poll, so setting
    it is retried until the version is known (or `stop`). Temporal unreachable is waited out, as
    the worker's polling waits it out: a worker started while Temporal is down must not exit."""
    unreachable_since: float | None = None
    while not stop.is_set():
        try:
            current = await stranded.current_version(client, version.deployment_name)
            if current is not None:
                return current
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=version.deployment_name,
                    build_id=version.build_id,
                    identity="worker: first version of the deployment",
                )
            )
            log.info("worker deployment %s had no current version: made %s current", version.deployment_name, version.build_id)
            return version.build_id
        except RPCError as exc:
            # NOT_FOUND / FAILED_PRECONDITION: the server has not seen this version poll yet;
            # another worker may also have won the race: the next describe tells. RESOURCE_EXHAUSTED:
            # the deployment is busy ("too many requests issued to Worker Deployment ... try again
            # later"), e.g. while the server registers the version or another process describes it.
            # Anything else but a refusal is Temporal going away or coming back (UNAVAILABLE,
            # DEADLINE_EXCEEDED, and UNKNOWN "transport error" for a connection cut mid-call):
            # waited out, with a growing pause.
            if exc.status in _REFUSED:
                raise
            if exc.status not in _NOT_YET and unreachable_since is None:
                unreachable_since = time.monotonic()
                log.warning("worker deployment %s: Temporal unreachable (%s); retrying", version.deployment_name, exc.message)
        try:
            await asyncio.wait_for(stop.wait(), poll if unreachable_since is None else min(5.0, 0.5 + time.monotonic() - unreachable_since))
        except TimeoutError:
            pass
    return ""


def not_current_warning(deployment_name: str, build: str, current: str | None, current_workers: int) -> str:
    """What a worker whose version is not current logs at start: it gets no work, and if the
    current version has no worker either, nothing runs at all (docs/upgrades.md section 2)."""
    make_current = f"temporal worker deployment set-current-version --deployment-name {deployment_name} --build-id {build} --yes"
    if current is None:
        return (
            f"worker version {deployment_name}:{build} is not current, and deployment {deployment_name} has no current version: "
            f"no node runs until one is made current. To make this one current: {make_current} (docs/upgrades.md section 2)"
        )
    served = (
        f"{current_workers} workers polling"
        if current_workers
        else "NO worker polling: its running nodes and every new node wait (the watchdog fails them after STRANDED_AFTER)"
    )
    return (
        f"worker version {deployment_name}:{build} is not current: it gets no work until it is. The current version is "
        f"{current}, with {served}. To make this version current: {make_current} (docs/upgrades.md section 2)"
    )


async def warn_if_not_current(client: Client, version: WorkerDeploymentVersion, task_queue: str) -> str | None:
    """Log one warning (and return it) when this worker's version is not the current one; a
    failed check is logged and ignored (a diagnostic must not stop the worker)."""
    try:
        return await _warn_if_not_current(client, version, task_queue)
    except RPCError as exc:
        log.warning("worker version %s: could not check whether it is current (%s)", version.to_canonical_string(), exc)
        return None


async def _warn_if_not_current(client: Client, version: WorkerDeploymentVersion, task_queue: str) -> str | None:
    current = await stranded.current_version(client, version.deployment_name)
    if current == version.build_id:
        return None
    workers = 0
    if current is not None:
        now = datetime.now(UTC)
        stopped = await stranded.stopped_workers(client, task_queue)
        live = {p.identity for p in await stranded.pollers(client, task_queue, version.deployment_name)
                if p.build_id == current and stranded.served_until([p], stopped)[current] > now}
        workers = len(live)
    message = not_current_warning(version.deployment_name, version.build_id, current, workers)
    log.warning(message)
    return message


# -- what `executor status` shows ----------------------------------------------------------------

UNVERSIONED = "(unversioned)"


async def polling_build_ids(client: Client, task_queue: str) -> dict[str, set[str]]:
    """Build id -> identities of the workers polling `task_queue` (workflow or activity tasks)."""
    found: dict[str, set[str]] = {}
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        reply = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind)
        )
        for poller in reply.pollers:
            options = poller.deployment_options
            build = options.build_id if options.worker_versioning_mode == WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED else UNVERSIONED
            found.setdefault(build, set()).add(poller.identity)
    return found


async def version_statuses(client: Client, deployment_name: str) -> dict[str, str]:
    """Build id -> `current`, `ramping`, `draining`, `drained`, `inactive` of the deployment's versions."""
    try:
        reply = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return {}
        raise
    return {
        summary.deployment_version.build_id: WorkerDeploymentVersionStatus.Name(summary.status)
        .removeprefix("WORKER_DEPLOYMENT_VERSION_STATUS_")
        .lower()
        for summary in reply.worker_deployment_info.version_summaries
    }


async def open_nodes(client: Client, task_queue: str, deployment_name: str, build: str) -> int:
    """Running NodeWorkflows pinned to (or last run on) one version of the deployment."""
    query = (
        f"WorkflowType = 'NodeWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}' "
        f"AND TemporalWorkerDeploymentVersion = '{deployment_name}:{build}'"
    )
    return (await client.count_workflows(query)).count


async def versions_report(client: Client, settings: Settings) -> list[dict[str, object]]:
    """One row per build id that polls the task queue or is a version of the deployment:
    its status, the workers polling with it, and the open nodes it holds."""
    pollers = await polling_build_ids(client, settings.temporal_task_queue)
    statuses = await version_statuses(client, settings.worker_deployment_name) if settings.worker_versioning else {}
    rows: list[dict[str, object]] = []
    for build in sorted(set(pollers) | set(statuses)):
        row: dict[str, object] = {"build_id": build, "status": statuses.get(build, "-"), "pollers": sorted(pollers.get(build, ()))}
        if build != UNVERSIONED:
            row["open_nodes"] = await open_nodes(client, settings.temporal_task_queue, settings.worker_deployment_name, build)
        rows.append(row)
    return rows
