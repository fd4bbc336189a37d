"""Payload storage: payloads larger than `PAYLOAD_STORAGE_THRESHOLD` leave the history.

Temporal's SDK does the bookkeeping (`ExternalStorage`, temporalio.converter): it runs after the
payload codec when encoding (so a blob is whatever the codec made of it, ciphertext included) and
before it when decoding, and the history keeps a small reference (`json/protobuf`,
`temporal.api.sdk.v1.ExternalStorageReference`: the driver's name and its claim). We only choose
the driver (`PAYLOAD_STORAGE`):

- `redis` (the default): our Redis driver (adapters/redis_storage.py), content-addressed keys in
  the Redis the executor already uses;
- `s3`: the SDK's S3 driver (temporalio.contrib.aws.s3driver) through boto3
  (adapters/s3_storage.py), for production volumes;
- `off`: every payload stays in the history (and Temporal's payload limits apply).

Every driver is registered for reading whichever one stores, so switching `PAYLOAD_STORAGE` keeps
running workflows readable, provided the old store is still reachable.

Retention: a stored payload must outlive the node that refers to it. The longest a node may run
is `NODE_TIMEOUT` or its own config `timeout` (an agent's may be 7 days), whichever is longer;
a day of margin covers the emit, the watchdog's report and an operator's `rerun` reading the
input. `PAYLOAD_STORAGE_TTL_SECONDS` may only make it longer (to read closed histories in the UI
for as long as the namespace keeps them). Redis renews the TTL on every read and every store.

A payload that is gone or whose bytes do not match their hash raises `StoredPayloadUnreadable`,
naming the key. Where it surfaces (checked against temporalio 1.35):

- decoding a workflow activation (a replay after a restart or a cache eviction): the workflow task
  fails with that message and is retried; the watchdog (ingress/watchdog.py) reports the node as
  `node.failed` naming it once the task has failed for `STUCK_AFTER`, then terminates the run.
  Not a non-retryable `ApplicationError` on purpose: the SDK would answer the activation with a
  fail-workflow command, which a replay's recorded history contradicts, and the run would fail as
  "nondeterminism" with the payload's name lost. Retrying also lets a run recover when the blob
  comes back (Redis restored from a backup, S3 reachable again);
- decoding an activity's input: the SDK wraps it as "Failed decoding arguments" (retryable), the
  attempt fails, and the step's retry policy decides;
- reading a history from outside (`rerun`, the watchdog): the command says it cannot read it.

A store that cannot be reached (Redis down) raises the client's own error: retried the same way.
"""

from __future__ import annotations

from annotated_types import Le
from temporalio.converter import ExternalStorage, StorageDriver

from adapters.settings import Settings
from core.node_config import AgentNode, LlmNode, ToolNode

REDIS_DRIVER = "dago.redis"  # names recorded in histories: never rename
MARGIN_SECONDS = 86_400


class StoredPayloadUnreadable(RuntimeError):
    """A stored payload is missing (expired, deleted, Redis lost it) or corrupted: whatever refers
    to it cannot be decoded until it is back."""


def longest_node_deadline(settings: Settings) -> float:
    """`NODE_TIMEOUT`, or the largest `timeout` a node's own config may set, whichever is longer."""
    bounds = [
        constraint.le
        for model in (ToolNode, LlmNode, AgentNode)
        for constraint in model.model_fields["timeout"].metadata
        if isinstance(constraint, Le)
    ]
    return max([settings.node_timeout, *bounds])


def retention_seconds(settings: Settings) -> int:
    """How long a stored payload is kept after it was last stored or read."""
    derived = int(longest_node_deadline(settings)) + MARGIN_SECONDS
    return max(derived, settings.payload_storage_ttl_seconds or 0)


def external_storage(settings: Settings, redis_driver: StorageDriver, s3_driver: StorageDriver | None) -> ExternalStorage:
    """The SDK's external storage: every configured driver registered for reading (`off` too:
    references already in histories stay readable), the one `PAYLOAD_STORAGE` names storing."""
    drivers = [d for d in (redis_driver, s3_driver) if d is not None]
    storing = {"redis": redis_driver, "s3": s3_driver, "off": None}[settings.payload_storage]
    return ExternalStorage(
        drivers=drivers,
        driver_selector=lambda _context, _payload: storing,
        payload_size_threshold=settings.payload_storage_threshold,
    )
