"""The one place attachd makes a Redis client: telemetry, heartbeats, the API's health check and
counters, the CLI, and (as a URL and transport options) the Celery broker. With a sentinel://
URL (core/redisurl.py) each client reaches whichever master the Sentinels name now, and asks
again after a connection fails, so a failover moves every process without a restart.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from core import redisurl

# A dead Redis must cost a caller seconds, not a hang: the API answers 503, a worker's count is
# dropped (storage/telemetry.py), and the next call asks the Sentinels again.
TIMEOUT = 2.0


def connect(url: str, timeout: float = TIMEOUT) -> Redis:
    """A client of the Redis `url` names. Nothing connects until the first command."""
    target = redisurl.parse(url)
    if not target.sentinel:
        return Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    sentinel = Sentinel(
        list(target.sentinels),
        # The Sentinels ask for no password; the master does.
        sentinel_kwargs={"socket_connect_timeout": timeout, "socket_timeout": timeout},
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    client: Redis = sentinel.master_for(
        target.master_name,
        username=target.username,
        password=target.password,
        db=target.db,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    return client


def celery_transport(url: str) -> tuple[str, dict[str, Any]]:
    """The broker (and result backend) URL for Celery and the transport options that go with it:
    kombu's Sentinel transport wants the master's name there (Flower reads it there too)."""
    target = redisurl.parse(url)
    if not target.sentinel:
        return url, {}
    return target.kombu_url(), {
        "master_name": target.master_name,
        "sentinel_kwargs": {"socket_connect_timeout": TIMEOUT, "socket_timeout": TIMEOUT},
    }


def master_of(client: Redis) -> tuple[str, bool]:
    """Which Redis `client` reaches now, as host:port, and whether Sentinels chose it: the master
    they name (asked afresh), or the single Redis of its URL. Raises redis-py's errors; callers
    in storage turn them into ours."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        host, port = pool.get_master_address()
        return f"{host}:{port}", True
    client.ping()  # the address alone would name a Redis that is down
    kw = pool.connection_kwargs
    return f"{kw.get('host', '')}:{kw.get('port', 6379)}", False
