"""The Redis client, built in one place from the settings."""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from executor.config import Settings


def connect(settings: Settings, retries: int = 3) -> redis.Redis:
    """A client that retries a failed command a few times with a short backoff; the services add
    their own patient retries on top, and one-shot commands (status) pass `retries=0`."""
    host, port = settings.redis_host_port
    tls: dict = {"connection_class": redis.SSLConnection, "ssl_ca_certs": settings.redis_tls_ca_file} if settings.redis_tls else {}
    # A blocking pool: thousands of activities in flight wait for a connection instead of failing
    # with MaxConnectionsError once the pool is exhausted.
    pool = redis.BlockingConnectionPool(
        host=host,
        port=port,
        db=settings.redis_db,
        username=settings.redis_username,
        password=settings.redis_pass.get_secret_value() or None,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        max_connections=settings.redis_max_connections,
        timeout=30,
        **tls,
    )
    return redis.Redis(connection_pool=pool)


def text(value: bytes | str, errors: str = "strict") -> str:
    """A Redis reply (bytes unless the client decodes) as text."""
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)
