"""The SQL engine the record store runs on: one per database URL, the clock it stamps rows with,
and the one transaction wrapper that turns a lost database into core.errors.ServiceUnavailable.

Nothing above storage/ sees SQLAlchemy's exceptions; this is where they stop.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
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


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


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
    """What every part of the record store shares: the one engine, and transactions on it."""

    # Told, after a commit, of the webhook deliveries it wrote (storage/webhooks.py), to send
    # them at once; without it (or when sending fails) the reconciler sends them.
    announce: Callable[[Sequence[str]], None] | None = None

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _announce(self, delivery_ids: Sequence[str]) -> None:
        if delivery_ids and self.announce is not None:
            self.announce(delivery_ids)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Public for the read-only queries of storage.stats."""
        with transaction(self.engine) as conn:
            yield conn

    def ping(self) -> None:
        with self.transaction() as conn:
            conn.execute(select(1))
