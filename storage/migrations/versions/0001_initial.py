"""initial schema: tenants, access tokens, profiles, attachments, uploads

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "access_tokens",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("application", sa.String(255), nullable=False),
        sa.Column("master", sa.Boolean(), nullable=False),
        sa.Column("tenant_permissions", sa.JSON(), nullable=False),
        sa.Column("expires_on", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "username", name="uq_profiles_tenant_username"),
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "profile_id",
            sa.String(24),
            sa.ForeignKey("profiles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("file_name", sa.String(1024), nullable=False),
        sa.Column("current_upload_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("profile_id", "file_name", name="uq_attachments_profile_name"),
    )
    op.create_table(
        "uploads",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column(
            "attachment_id",
            sa.String(24),
            sa.ForeignKey("attachments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("original_name", sa.String(1024), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("declared_type", sa.String(255), nullable=False),
        sa.Column("sniffed_type", sa.String(255), nullable=True),
        sa.Column("detected_type", sa.String(255), nullable=True),
        sa.Column("staging_key", sa.String(1024), nullable=True),
        sa.Column("object_key", sa.String(1024), nullable=True),
        sa.Column("quarantine_key", sa.String(1024), nullable=True),
        sa.Column("signature", sa.String(255), nullable=True),
        sa.Column("engine_version", sa.String(255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_uploads_state_updated", "uploads", ["state", "updated_at"])
    op.create_index("ix_uploads_attachment", "uploads", ["attachment_id"])


def downgrade() -> None:
    op.drop_index("ix_uploads_attachment", table_name="uploads")
    op.drop_index("ix_uploads_state_updated", table_name="uploads")
    op.drop_table("uploads")
    op.drop_table("attachments")
    op.drop_table("profiles")
    op.drop_table("access_tokens")
    op.drop_table("tenants")
