"""The uploads of one bench account as the record store has them: waiting until all have left
the pipeline, and their states and finishing times (B2 and B3)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import func, select

from bench.cases import bar
from bench.config import Sizes
from bench.target import Account, Target
from storage.schema import attachments, uploads

TERMINAL = ("attached", "infected", "rejected", "failed", "superseded")


def state_counts(t: Target, account: Account) -> dict[str, int]:
    query = (
        select(uploads.c.state, func.count())
        .join(attachments, attachments.c.id == uploads.c.attachment_id)
        .where(attachments.c.profile_id == account.profile_id)
        .group_by(uploads.c.state)
    )
    with t.records.engine.connect() as conn:
        return {state: count for state, count in conn.execute(query)}


def wait_terminal(t: Target, account: Account, count: int, sizes: Sizes, desc: str) -> float:
    """Wait until every upload has left the pipeline. One cheap query per poll: the timings come
    from the records themselves, not from when we noticed."""
    start = time.monotonic()
    deadline = start + max(120.0, count * 1.0)
    with bar(sizes.progress, desc, count, unit="file") as progress:
        while True:
            counts = state_counts(t, account)
            done = sum(counts.get(s, 0) for s in TERMINAL)
            progress.update(counts.get("attached", 0) - progress.n)
            if done >= count:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pipeline did not finish in time: {counts}")
            time.sleep(0.25)


def upload_rows(t: Target, account: Account) -> list[tuple[str, str, str | None, float, str]]:
    """(original name, state, reason, finished as a Unix time, attached object key) per upload."""
    query = (
        select(
            uploads.c.original_name,
            uploads.c.state,
            uploads.c.reason,
            uploads.c.finished_at,
            uploads.c.object_key,
        )
        .join(attachments, attachments.c.id == uploads.c.attachment_id)
        .where(attachments.c.profile_id == account.profile_id)
    )
    with t.records.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        (name, state, why, unix_time(finished), key) for name, state, why, finished, key in rows
    ]


def unix_time(value: datetime | None) -> float:
    if value is None:
        return float("nan")
    # SQLite gives the stored UTC time back without its zone.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
