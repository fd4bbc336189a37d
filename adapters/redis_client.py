"""The Redis client, built in one place from the settings, and the check of the server it reaches.

`REDIS_ADDR` takes `host`, `host:port`, `[v6addr]:port`, or a URL (`redis://user:pass@host:6379/0`,
`rediss://…` for TLS). What a URL says wins over `REDIS_PASS`, `REDIS_DB` and `REDIS_USERNAME`.
Over TLS the server's certificate is checked against `REDIS_TLS_CA_FILE` (else the system CAs)
and its host name; `REDIS_TLS_CERT_FILE`/`REDIS_TLS_KEY_FILE` present a client certificate to a
server that requires one (`tls-auth-clients yes`). docs/tls.md says how this is tested.
The oldest server we support is Redis 6.2 (XAUTOCLAIM, `SET … KEEPTTL`, ACL users); Valkey, the
open-source continuation of Redis, counts from its first release. The services refuse an older
server at start with one line, instead of failing node by node later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from adapters.backoff import Backoff
from adapters.settings import Settings
from core.errors import ContractError

log = logging.getLogger(__name__)

FLOOR = (6, 2)  # Redis 6.2: XAUTOCLAIM, SET KEEPTTL, GETDEL; every Valkey release is newer


def connect(settings: Settings, retries: int = 3) -> redis.Redis:
    """A client that retries a failed command a few times with a short backoff; the services add
    their own patient retries on top, and one-shot commands (status) pass `retries=0`."""
    options: dict[str, Any] = dict(
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        max_connections=settings.redis_max_connections,
        timeout=30,
    )
    if settings.redis_pass.get_secret_value():
        options["password"] = settings.redis_pass.get_secret_value()
    if settings.redis_username:
        options["username"] = settings.redis_username
    url = settings.redis_url
    if url.startswith("rediss://") or settings.redis_tls:
        options["ssl_ca_certs"] = settings.redis_tls_ca_file
        if settings.redis_tls_cert_file:
            options["ssl_certfile"] = settings.redis_tls_cert_file
            options["ssl_keyfile"] = settings.redis_tls_key_file  # None: the key is in the certificate's file
        if not url.startswith("rediss://"):
            url = "rediss://" + url.removeprefix("redis://")
    if "/" not in url.split("://", 1)[1]:  # no database in the URL: REDIS_DB
        options["db"] = settings.redis_db
    # A blocking pool: thousands of activities in flight wait for a connection instead of failing
    # with MaxConnectionsError once the pool is exhausted.
    pool = redis.BlockingConnectionPool.from_url(url, **options)
    return redis.Redis(connection_pool=pool)


def as_str(value: bytes | str, errors: str = "strict") -> str:
    """A Redis reply (bytes unless the client decodes) as text."""
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)


class UnsupportedServer(ContractError):
    """The Redis server is older than the floor: a deployment error, reported in one line."""


def server_version(info: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
    """(`redis` | `valkey`, version) from `INFO server`. Valkey also reports a `redis_version`
    (7.2.4, what it forked from); its own version is `valkey_version`."""
    for name in ("valkey", "redis"):
        raw = info.get(f"{name}_version")
        if raw:
            parts = [int(p) for p in str(raw).split(".") if p.isdigit()]
            return name, tuple(parts)
    raise UnsupportedServer("Redis: INFO server reports no version")


def describe(name: str, version: tuple[int, ...]) -> str:
    return f"{'Valkey' if name == 'valkey' else 'Redis'} {'.'.join(map(str, version))}"


async def require_supported(client: redis.Redis, settings: Settings, stop: asyncio.Event) -> str:
    """Wait until Redis answers (it may start after us), then refuse a server below the floor.
    Returns the server's name and version for the start-up log line ("unchecked" when told to
    stop while waiting)."""
    backoff = Backoff(first=0.5)
    while True:
        try:
            info = await client.info("server")
            break
        except (OSError, redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis at %s not reachable (%s); retrying in %.1fs", settings.redis_addr, exc, backoff.delay)
            if await backoff.wait(stop):
                return "unchecked (stopped while waiting for it)"
    name, version = server_version(info)
    if name == "redis" and version < FLOOR:
        raise UnsupportedServer(
            f"Redis at {settings.redis_addr} is {describe(name, version)}; this executor needs Redis "
            f"{'.'.join(map(str, FLOOR))} or newer (or Valkey)"
        )
    return describe(name, version)
