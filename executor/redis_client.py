"""The Redis client, built in one place from the settings."""

from __future__ import annotations

import redis.asyncio as redis

from executor.config import Settings


def connect(settings: Settings) -> redis.Redis:
    host, port = settings.redis_host_port
    return redis.Redis(
        host=host,
        port=port,
        db=settings.redis_db,
        password=settings.redis_pass.get_secret_value() or None,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
        retry_on_timeout=True,
    )
