"""renditions: the type of what a version serves when it is not the type received (a HEIC
served as JPEG), beside its served digests. Renditions themselves are made on demand and need
no column: the object store lists them.

Rows attached before this migration keep NULL: they are served as their declared type.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("served_type", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("served_type")
