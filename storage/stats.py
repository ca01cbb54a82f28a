"""Read-only aggregates over the upload table for operators: the dashboard and the metrics
exporter. Every query filters on the (state, updated_at) index or reads a bounded window, so a
scrape stays cheap on a large table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.domain import ACTIVE, TERMINAL, Reason, State
from storage.records import RecordStore, as_utc
from storage.schema import uploads
from storage.webhooks import OutboxStats, Webhooks

PROBLEM_STATES = (State.FAILED, State.REJECTED, State.INFECTED)


@dataclass(frozen=True)
class Finished:
    id: str
    state: str
    created_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class Problem:
    id: str
    state: str
    original_name: str
    reason: str | None
    reason_code: Reason | None
    attempts: int
    updated_at: datetime


class StoreStats:
    def __init__(self, records: RecordStore) -> None:
        self.records = records

    def ping(self) -> None:
        self.records.ping()

    def counts_by_state(self) -> dict[str, int]:
        return self.records.count_by_state()

    def webhooks(self) -> OutboxStats:
        """Deliveries by state, the oldest pending one's age, the latest given up on."""
        return Webhooks(self.records.engine).stats()

    def last_moved(self) -> dict[str, datetime]:
        """Per non-terminal state, when its least recently updated upload last moved: a pipeline
        that stalls shows here long before the reconciler steps in."""
        with self.records.reading() as conn:
            rows = conn.execute(
                select(uploads.c.state, func.min(uploads.c.updated_at))
                .where(uploads.c.state.in_(tuple(ACTIVE)))
                .group_by(uploads.c.state)
            ).all()
        return {state: moved for state, value in rows if (moved := as_utc(value)) is not None}

    def finished_since(self, since: datetime, limit: int = 20_000) -> list[Finished]:
        """Uploads that reached a terminal state at or after `since` (newest first)."""
        with self.records.reading() as conn:
            # updated_at >= finished_at always, so this range is a superset the index can serve.
            rows = conn.execute(
                select(uploads.c.id, uploads.c.state, uploads.c.created_at, uploads.c.finished_at)
                .where(
                    uploads.c.state.in_(tuple(TERMINAL)),
                    uploads.c.updated_at >= since,
                    uploads.c.finished_at >= since,
                )
                .order_by(uploads.c.finished_at.desc())
                .limit(limit)
            ).all()
        return [
            Finished(r.id, r.state, as_utc(r.created_at), as_utc(r.finished_at))  # type: ignore[arg-type]
            for r in rows
        ]

    def rejections_since(self, since: datetime) -> dict[Reason, int]:
        """Rejected uploads since `since`, counted by their typed reason."""
        with self.records.reading() as conn:
            rows = conn.execute(
                select(uploads.c.reason_code, func.count())
                .where(uploads.c.state == State.REJECTED, uploads.c.updated_at >= since)
                .group_by(uploads.c.reason_code)
            ).all()
        return {Reason(code or Reason.OTHER): n for code, n in rows}

    def recent_problems(self, limit: int = 20) -> list[Problem]:
        """The latest failed, rejected and infected uploads, newest first."""
        with self.records.reading() as conn:
            rows = conn.execute(
                select(
                    uploads.c.id,
                    uploads.c.state,
                    uploads.c.original_name,
                    uploads.c.reason,
                    uploads.c.reason_code,
                    uploads.c.attempts,
                    uploads.c.updated_at,
                )
                .where(uploads.c.state.in_(PROBLEM_STATES))
                .order_by(uploads.c.updated_at.desc())
                .limit(limit)
            ).all()
        return [
            Problem(
                r.id,
                r.state,
                r.original_name,
                r.reason,
                Reason(r.reason_code) if r.reason_code else None,
                r.attempts,
                as_utc(r.updated_at),  # type: ignore[arg-type]
            )
            for r in rows
        ]
