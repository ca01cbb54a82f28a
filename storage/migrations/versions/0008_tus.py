"""resumable_uploads: tus uploads being received, their offset, S3 parts and incomplete part

Revision ID: 0008
Revises: 0005, 0006, 0007
Create Date: 2026-12-06

Also joins the three heads that branched off 0004, so the chain has one head again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = ("0005", "0006", "0007")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resumable_uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("profile_id", sa.String(24), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("file_name", sa.String(1024), nullable=False),
        sa.Column("declared_type", sa.String(255), nullable=False),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("staging_key", sa.String(1024), nullable=False),
        sa.Column("multipart_id", sa.String(1024), nullable=True),
        sa.Column("parts", sa.JSON, nullable=False),
        sa.Column("incomplete_key", sa.String(1024), nullable=True),
        sa.Column("incomplete_size", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_resumable_uploads_expires", "resumable_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_table("resumable_uploads")
