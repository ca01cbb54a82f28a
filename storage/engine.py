"""The SQL engine the record store runs on: one per database URL, the clock it stamps rows with,
and the one transaction wrapper that turns a lost database into core.errors.ServiceUnavailable.

Nothing above storage/ sees SQLAlchemy's exceptions; this is where they stop.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import DBAPIError, OperationalError

from core.errors import ServiceUnavailable


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def new_object_id() -> str:
    """24 lowercase hex characters, the shape of Crafter's MongoDB ObjectIds."""
    return secrets.token_hex(12)


def make_engine(url: str, *, reader: bool = False) -> Engine:
    """The engine for `url`. On SQLite, a writer's transactions begin IMMEDIATE (the write lock
    taken at the start, never half-way through, where SQLite would have to give up and retry)
    and a reader's are plain deferred ones, which in WAL mode never wait for a writer."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # NORMAL is durable in WAL mode against a crash of the process (what we guard
            # against); FULL adds an fsync per commit for the power cut, at a writer's cost.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            # The transactions are ours to begin (below), not pysqlite's before the first DML.
            dbapi_conn.isolation_level = None

        begin = "BEGIN" if reader else "BEGIN IMMEDIATE"

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


_readers: dict[str, Engine] = {}
_readers_lock = threading.Lock()


def reader_engine(url: str) -> Engine:
    """The one reading engine per SQLite database in a process, whichever parts of the store
    (records, webhooks, tus uploads, hand-offs) read it: one pool, not one per part."""
    with _readers_lock:
        engine = _readers.get(url)
        if engine is None:
            engine = _readers[url] = make_engine(url, reader=True)
        return engine


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (None: not SQLite, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


class WriterQueue:
    """SQLite has one writer at a time; the others used to wait in its busy handler, which
    sleeps between tries (1, 2, 5, 10 … 100 ms), so a writer often slept well past the moment
    the lock was free: the p99 of an upload was back-off, not work (make bench, B2). Here every
    writer of every process on this machine queues on an flock of a file beside the database
    instead, and the kernel wakes the next one the moment the lock is released.

    One open file per thread and process (flock belongs to the open file: threads queue too, and
    a forked child never shares its parent's), one queue per database file in a process, and
    re-entrant within a thread (a transaction inside a transaction must not wait on itself)."""

    _queues: dict[Path, WriterQueue] = {}
    _queues_lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".writers")
        self._local = threading.local()

    @classmethod
    def of(cls, database: Path) -> WriterQueue:
        key = database.resolve()
        with cls._queues_lock:
            queue = cls._queues.get(key)
            if queue is None:
                queue = cls._queues[key] = cls(key)
            return queue

    def _fd(self) -> int:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            local.pid = os.getpid()
            local.depth = 0
        return int(local.fd)

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self._fd()
        local = self._local
        if local.depth == 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        local.depth += 1
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0:
                fcntl.flock(local.fd, fcntl.LOCK_UN)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction; driver failures leave as ServiceUnavailable."""
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        raise ServiceUnavailable("database", type(exc.orig).__name__) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise ServiceUnavailable("database", type(exc.orig).__name__) from exc
        raise


class EngineBound:
    """What every part of the record store shares: the one engine, and transactions on it.

    Two paths: `transaction()` for anything that writes (on SQLite: queued, then BEGIN
    IMMEDIATE), `reading()` for what only reads (never queued, never holding the write lock)."""

    # Told, after a commit, of the webhook deliveries it wrote (storage/webhooks.py), to send
    # them at once; without it (or when sending fails) the reconciler sends them.
    announce: Callable[[Sequence[str]], None] | None = None

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        url = engine.url.render_as_string(hide_password=False)
        path = sqlite_path(url)
        self.reader = reader_engine(url) if path else engine
        self._writers = WriterQueue.of(path) if path else None

    def _announce(self, delivery_ids: Sequence[str]) -> None:
        if delivery_ids and self.announce is not None:
            self.announce(delivery_ids)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction that may write."""
        if self._writers is None:
            with transaction(self.engine) as conn:
                yield conn
            return
        with self._writers.held(), transaction(self.engine) as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A transaction that only reads: public for the queries of storage.stats."""
        with transaction(self.reader) as conn:
            yield conn

    def ping(self) -> None:
        with self.reading() as conn:
            conn.execute(select(1))
