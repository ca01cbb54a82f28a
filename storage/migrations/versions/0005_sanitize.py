"""sanitize: what is served when the sanitize step changed the picture (its md5, sha256 and
size beside the received ones), which steps changed it, and its renditions

Rows attached before this migration keep NULLs: they are served as received, with no renditions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("served_md5", sa.String(32), nullable=True))
        batch.add_column(sa.Column("served_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("served_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("sanitize_steps", sa.String(64), nullable=True))
        batch.add_column(sa.Column("renditions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        for name in ("renditions", "sanitize_steps", "served_size", "served_sha256", "served_md5"):
            batch.drop_column(name)
