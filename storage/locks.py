"""Short leases shared by every API process: one process makes a rendition while the others
wait for the object it puts (api/renditions.py). A lease expires on its own, so a process that
dies holding one delays the others by its time-to-live at most, never forever."""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import suppress

from redis import Redis
from redis.exceptions import RedisError

from core.errors import ServiceUnavailable

_PREFIX = "attachd:lease:"
# Deletes the key only if it still holds our token: a lease that expired and was taken by
# another process is not ours to release.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisLeases:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def acquire(self, name: str, ttl_seconds: float) -> str | None:
        """A token if the lease was free (it is ours until released or ttl), None if held."""
        token = secrets.token_hex(8)
        try:
            got = self.redis.set(_PREFIX + name, token, nx=True, px=int(ttl_seconds * 1000))
        except RedisError as exc:
            raise ServiceUnavailable("redis", str(exc)) from exc
        return token if got else None

    def release(self, name: str, token: str) -> None:
        with suppress(RedisError):  # it expires by itself
            self.redis.eval(_RELEASE, 1, _PREFIX + name, token)


class LocalLeases:
    """The same within one process (tests/api, tools without Redis)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, name: str, ttl_seconds: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            held = self._held.get(name)
            if held is not None and held[1] > now:
                return None
            token = secrets.token_hex(8)
            self._held[name] = (token, now + ttl_seconds)
            return token

    def release(self, name: str, token: str) -> None:
        with self._lock:
            if self._held.get(name, ("", 0.0))[0] == token:
                del self._held[name]
