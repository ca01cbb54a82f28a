"""reason_code: why an upload was refused or ended badly, as a bounded label beside the free text
`reason`, so metrics and the dashboard never classify prose again

Existing rows get their code from their text, with the classification the dashboard used until
now (api/overview.py's regular expressions at the time of writing), copied here because a
migration must mean the same thing whatever the code later becomes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of api/overview.py's _REASON_CLASSES: first match wins.
_REJECTED_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("scan_limit", re.compile(r"^too large to scan")),
    ("empty", re.compile(r"file is empty")),
    ("too_large", re.compile(r"over the limit|image is too large")),
    ("svg_unsafe", re.compile(r"^SVG (?!is not well-formed)")),
    ("polyglot", re.compile(r"data after the end|ZIP archive|markup")),
    ("type_mismatch", re.compile(r"^content is|not a type this check can verify|root element is")),
    (
        "corrupt",
        re.compile(r"truncated|corrupt|cannot decode|not a readable|not well-formed|Pillow warned"),
    ),
)
# What the pipeline wrote on giving up (workers/pipeline.py, workers/tasks.py at 0003).
_FAILED_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("object_missing", re.compile(r"missing from object storage")),
    ("gave_up", re.compile(r"gave up after")),
    ("no_progress", re.compile(r"no progress after")),
)

_BATCH = 500

_uploads = sa.table(
    "uploads",
    sa.column("seq", sa.Integer),
    sa.column("state", sa.String),
    sa.column("reason", sa.Text),
    sa.column("reason_code", sa.String),
)


def classify(state: str, reason: str | None) -> str | None:
    """The code for a legacy row: None for states that were not refused (attached, superseded,
    still in the pipeline), 'other' for a refusal or failure whose text matches no class."""
    if state == "infected":
        return "infected"
    if state == "rejected":
        classes = _REJECTED_CLASSES
    elif state == "failed":
        classes = _FAILED_CLASSES
    else:
        return None
    for code, pattern in classes:
        if reason and pattern.search(reason):
            return code
    return "other"


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("reason_code", sa.String(32), nullable=True))
    _fill(op.get_bind())


def _fill(conn: sa.Connection) -> None:
    # Classified in Python (the patterns are Python regexes; SQLite has no REGEXP), in batches
    # of rows by seq so a large table never sits in memory at once.
    last = 0
    while True:
        rows = conn.execute(
            sa.select(_uploads.c.seq, _uploads.c.state, _uploads.c.reason)
            .where(
                _uploads.c.seq > last,
                _uploads.c.state.in_(("infected", "rejected", "failed")),
            )
            .order_by(_uploads.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        params = [{"b_seq": seq, "b_code": classify(state, reason)} for seq, state, reason in rows]
        conn.execute(
            sa.update(_uploads)
            .where(_uploads.c.seq == sa.bindparam("b_seq"))
            .values(reason_code=sa.bindparam("b_code")),
            params,
        )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("reason_code")
