"""Operational telemetry kept in the broker's Redis, read by every API process alike.

Three kinds of facts live here, next to Celery's own keys:

- counters and one histogram that only workers witness (a scan's outcome, a retry, how long an
  upload took to finish), incremented by workers/signals.py. Kept in Redis rather than in each
  worker's memory, so they survive worker restarts, add up across machines, and any API process
  can export them: no Prometheus multiprocess directory, no per-worker scrape target.
- worker presence: each worker writes a heartbeat with its queues every few seconds.
- the Celery queues themselves: waiting messages, the age of the oldest, messages held unacked.

Redis errors become ServiceUnavailable here; callers never see redis-py.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from core.errors import ServiceUnavailable
from core.tasks import PRIORITY_STEPS
from storage import redisconn

log = logging.getLogger(__name__)

# Stamped on every task message at publish time (workers/signals.py): Celery's messages carry no
# timestamp of their own, and the age of the oldest waiting message is the queue's best alarm.
SENT_AT_HEADER = "attachd_sent_at"
REQUEST_ID_HEADER = "attachd_request_id"

_KEY = "attachd:ops:"


@dataclass(frozen=True)
class BrokerMaster:
    address: str  # host:port
    # Chosen by Sentinels (a failover moves it), or the one Redis of a redis:// URL.
    sentinel: bool


@dataclass(frozen=True)
class Outage:
    """The last time the broker could not be reached, as its kept hand-offs tell it
    (storage/handoffs.py): from the first kept to the last sent again."""

    started: float  # Unix time
    ended: float
    handoffs: int

    @property
    def stalled_seconds(self) -> float:
        return max(0.0, self.ended - self.started)


OUTAGE_KEY = _KEY + "last_outage"
PRESENCE_KEY = _KEY + "workers"
# A worker is online while its heartbeat is younger than this; it beats every PRESENCE_INTERVAL.
PRESENCE_INTERVAL = 5.0
PRESENCE_TTL = 20.0

# name -> label names. Every counter a worker or the API may increment is declared here, so the
# exporter knows each one's labels and a typo fails loudly instead of creating a new series.
COUNTERS: dict[str, tuple[str, ...]] = {
    "upload_transitions": ("from", "to"),
    "scan_outcomes": ("outcome",),
    "typecheck_rejections": ("stage", "reason"),
    "task_retries": ("task",),
    "task_failures": ("task",),
    # An operator's `attachd quarantine release` / `purge` (workers/quarantine.py).
    "quarantine_actions": ("action",),
    # Webhook attempts: delivered, http_error, connection_error, refused (the SSRF guard).
    "webhook_attempts": ("outcome",),
    # The sanitize step (workers/sanitize): pictures attached, changed or left byte for byte,
    # and the bytes their metadata took.
    "images_sanitized": ("format", "outcome"),
    "image_bytes_removed": ("format",),
    # Renditions made at their first request (api/renditions.py), by the format made.
    "renditions_made": ("format",),
    # Resumable (tus) uploads: created, completed (recorded), terminated, expired (reaped).
    "resumable_uploads": ("event",),
}
LATENCY = "upload_latency_seconds"
LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, math.inf)

# kombu's Redis transport: a queue is a list per priority step, named "<queue>\x06\x16<step>"
# except for step 0, and messages delivered but not yet acknowledged wait in the "unacked" hash.
_PRIORITY_SEP = "\x06\x16"
_UNACKED = "unacked"


@dataclass(frozen=True)
class QueueState:
    name: str
    depth: int
    oldest_age_seconds: float | None  # None: empty, or only messages without a timestamp
    unacked: int


@dataclass(frozen=True)
class Presence:
    hostname: str
    queues: tuple[str, ...]  # consuming now (empty while drained)
    configured: tuple[str, ...]  # the queues it started with
    pool: str
    concurrency: int
    pid: int
    started_at: float
    seen_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Presence:
        data = json.loads(raw)
        data["queues"] = tuple(data["queues"])
        data["configured"] = tuple(data["configured"])
        return cls(**data)


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count)
    total: float
    count: float


def _field(labels: Sequence[str]) -> str:
    return "|".join(labels)


def _labels(field: str, arity: int) -> tuple[str, ...] | None:
    parts = tuple(field.split("|"))
    return parts if len(parts) == arity else None


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


class Telemetry:
    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.clock = clock
        # The pipeline that `batched` collects this thread's writes in, while it is open.
        self._batch = threading.local()

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Counts written inside go to Redis in one round trip at the end, not one each: a
        small file's task counts half a dozen things (make bench, B3). Best effort, like every
        count: a Redis that is down at the end costs these counts (logged), never the work
        done inside, and an exception from inside goes on unchanged."""
        if getattr(self._batch, "pipe", None) is not None:  # already inside one
            yield
            return
        pipe = self.redis.pipeline(transaction=False)
        self._batch.pipe = pipe
        try:
            yield
        finally:
            # Also after a failure inside: what was counted before it still happened.
            self._batch.pipe = None
            try:
                self.call(pipe.execute)
            except ServiceUnavailable as exc:
                log.warning("counts dropped: %s", exc)

    def writer(self) -> Any:
        """Where a write goes: the open batch, or Redis itself (then sent at once)."""
        return getattr(self._batch, "pipe", None)

    @classmethod
    def from_url(cls, url: str) -> Telemetry:
        return cls(redisconn.connect(url))

    def call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RedisError as exc:
            raise ServiceUnavailable("redis", str(exc)) from exc

    def ping(self) -> None:
        self.call(self.redis.ping)

    def master(self) -> BrokerMaster:
        """The Redis that is master now (after a failover, the promoted replica)."""
        address, sentinel = self.call(lambda: redisconn.master_of(self.redis))
        return BrokerMaster(address, sentinel)

    def record_outage(self, started: datetime, ended: datetime, handoffs: int) -> None:
        """Best effort, like every count: Redis has just answered the drain that calls this."""
        values = (("started", started.timestamp()), ("ended", ended.timestamp()))

        def write() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                for name, value in values:
                    pipe.hset(OUTAGE_KEY, name, value)
                pipe.hset(OUTAGE_KEY, "handoffs", handoffs)
                pipe.execute()

        try:
            self.call(write)
        except ServiceUnavailable as exc:
            log.warning("outage not recorded: %s", exc)

    def last_outage(self) -> Outage | None:
        raw: dict[bytes, bytes] = self.call(lambda: self.redis.hgetall(OUTAGE_KEY))
        try:
            return Outage(
                float(raw[b"started"]), float(raw[b"ended"]), int(float(raw[b"handoffs"]))
            )
        except (KeyError, ValueError):
            return None

    # --- counters and the latency histogram ---------------------------------------------------

    def incr(self, counter: str, *labels: str, amount: int = 1) -> None:
        names = COUNTERS[counter]
        if len(labels) != len(names):
            raise ValueError(f"{counter} takes labels {names}, got {labels}")
        pipe = self.writer()
        if pipe is not None:
            pipe.hincrby(_KEY + counter, _field(labels), amount)
            return
        self.call(lambda: self.redis.hincrby(_KEY + counter, _field(labels), amount))

    def observe_latency(self, state: str, seconds: float) -> None:
        bucket = next(b for b in LATENCY_BUCKETS if seconds <= b)

        def add(pipe: Any) -> None:
            pipe.hincrby(_KEY + LATENCY, _field((state, "bucket", repr(bucket))), 1)
            pipe.hincrbyfloat(_KEY + LATENCY, _field((state, "sum")), seconds)
            pipe.hincrby(_KEY + LATENCY, _field((state, "count")), 1)

        batch = self.writer()
        if batch is not None:
            add(batch)
            return

        def write() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                add(pipe)
                pipe.execute()

        self.call(write)

    def counters(self) -> dict[str, dict[tuple[str, ...], float]]:
        def read() -> list[dict[bytes, bytes]]:
            with self.redis.pipeline(transaction=False) as pipe:
                for name in COUNTERS:
                    pipe.hgetall(_KEY + name)
                return pipe.execute()

        out: dict[str, dict[tuple[str, ...], float]] = {}
        for (name, label_names), raw in zip(COUNTERS.items(), self.call(read), strict=True):
            values: dict[tuple[str, ...], float] = {}
            for field, value in raw.items():
                labels = _labels(field.decode(), len(label_names))
                if labels is not None:
                    values[labels] = float(value)
            out[name] = values
        return out

    def latency(self) -> dict[str, Histogram]:
        raw: dict[bytes, bytes] = self.call(lambda: self.redis.hgetall(_KEY + LATENCY))
        per_state: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            state, _, rest = field.decode().partition("|")
            per_state.setdefault(state, {})[rest] = float(value)
        out = {}
        for state, values in per_state.items():
            running = 0.0
            buckets = []
            for bound in LATENCY_BUCKETS:
                running += values.get(f"bucket|{bound!r}", 0.0)
                buckets.append((bound, running))
            out[state] = Histogram(buckets, values.get("sum", 0.0), values.get("count", 0.0))
        return out

    # --- worker presence ----------------------------------------------------------------------

    def announce(self, presence: Presence) -> None:
        self.call(lambda: self.redis.hset(PRESENCE_KEY, presence.hostname, presence.to_json()))

    def retire(self, hostname: str) -> None:
        self.call(lambda: self.redis.hdel(PRESENCE_KEY, hostname))

    def forget_stale(self, older_than: float = 3600.0) -> int:
        """Drop heartbeats of workers gone for good (killed without a chance to retire)."""
        now = self.clock()
        gone = [host for host, p in self._presences().items() if now - p.seen_at > older_than]
        if gone:
            self.call(lambda: self.redis.hdel(PRESENCE_KEY, *gone))
        return len(gone)

    def _presences(self) -> dict[str, Presence]:
        raw: dict[bytes, bytes] = self.call(lambda: self.redis.hgetall(PRESENCE_KEY))
        out = {}
        for host, value in raw.items():
            try:
                out[host.decode()] = Presence.from_json(value)
            except (ValueError, TypeError, KeyError):
                continue  # written by another version: ignore rather than fail a scrape
        return out

    def workers(self) -> list[Presence]:
        """Workers whose heartbeat is fresh, by hostname."""
        now = self.clock()
        live = [p for p in self._presences().values() if now - p.seen_at <= PRESENCE_TTL]
        return sorted(live, key=lambda p: p.hostname)

    # --- Celery queues ------------------------------------------------------------------------

    def queues(self, names: Iterable[str]) -> list[QueueState]:
        names = list(names)

        def read() -> tuple[list[Any], list[Any]]:
            with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    for key in queue_keys(name):
                        pipe.llen(key)
                        pipe.lindex(key, -1)  # LPUSH in, BRPOP out: the oldest is at the tail
                replies = pipe.execute()
            return replies, self.redis.hvals(_UNACKED)

        replies, unacked_raw = self.call(read)
        unacked: dict[str, int] = {}
        for raw in unacked_raw:
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, IndexError, TypeError):
                continue
            unacked[routing_key] = unacked.get(routing_key, 0) + 1
        now = self.clock()
        out = []
        steps = len(PRIORITY_STEPS)
        for i, name in enumerate(names):
            pairs = replies[i * steps * 2 : (i + 1) * steps * 2]
            depth = sum(int(n) for n in pairs[0::2])
            stamps = [s for s in (_sent_at(m) for m in pairs[1::2] if m) if s is not None]
            age = max(0.0, now - min(stamps)) if stamps else None
            out.append(QueueState(name, depth, age, unacked.get(name, 0)))
        return out


def _sent_at(raw: bytes) -> float | None:
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None
