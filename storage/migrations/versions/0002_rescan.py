"""rescan bookkeeping: the signature version each file was scanned with, and the version a
rescan was last queued for (so a throttled sweep never queues the same file twice)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("signature_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rescan_queued_version", sa.Integer(), nullable=True))
    op.create_index("ix_uploads_state_sigver", "uploads", ["state", "signature_version"])


def downgrade() -> None:
    op.drop_index("ix_uploads_state_sigver", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("rescan_queued_version")
        batch.drop_column("signature_version")
