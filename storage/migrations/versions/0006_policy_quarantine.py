"""tenant_policies: a tenant's own size limit and types, narrowing the installation's; and on
uploads, who released a quarantined file, when and why, and when its evidence was purged

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_policies",
        sa.Column("tenant", sa.String(255), primary_key=True),
        sa.Column("max_upload_size", sa.BigInteger, nullable=True),
        sa.Column("allowed_types", sa.JSON, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("released_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("release_reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        for name in ("purged_at", "release_reason", "released_at", "released_by"):
            batch.drop_column(name)
    op.drop_table("tenant_policies")
