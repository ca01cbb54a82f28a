"""Tables of the record store. Alembic migrations in storage/migrations create them; this module is
what the code queries against. Timestamps are timezone-aware UTC."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Token ids are bearer secrets: only their sha256 is stored, so a leaked database or a timing
# side channel on the index never reveals a usable token. `prefix` lets operators tell them apart.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("prefix", String(8), nullable=False),
    Column("application", String(255), nullable=False),
    Column("master", Boolean, nullable=False, default=False),
    Column("tenant_permissions", JSON, nullable=False),
    Column("expires_on", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("tenant", String(255), nullable=False),
    Column("username", String(255), nullable=False),
    Column("email", String(320), nullable=False),
    Column("password_hash", String(255), nullable=True),
    Column("verified", Boolean, nullable=False, default=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("roles", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("created_on", DateTime(timezone=True), nullable=False),
    Column("last_modified", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "username", name="uq_profiles_tenant_username"),
)

# One row per (profile, fileName): its id is the stable 24-hex id Crafter clients see.
# current_upload_id points at the attached version that is served; NULL until one is attached.
attachments = Table(
    "attachments",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("profile_id", String(24), ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
    Column("file_name", String(1024), nullable=False),
    Column("current_upload_id", String(32), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("profile_id", "file_name", name="uq_attachments_profile_name"),
)

# One row per accepted upload: the durable pipeline state machine. Every transition is a
# compare-and-set on `state`, so a task delivered twice has its effect once.
uploads = Table(
    "uploads",
    metadata,
    # Monotonic order of uploads, so a late-finishing older upload never replaces a newer one.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(32), nullable=False, unique=True),
    Column(
        "attachment_id",
        String(24),
        ForeignKey("attachments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", String(16), nullable=False),  # core.domain.State
    # The human message, and beside it the typed reason (core.domain.Reason) that metrics and
    # the dashboard count by: nothing reads the message to classify it.
    Column("reason", Text, nullable=True),
    Column("reason_code", String(32), nullable=True),
    Column("original_name", String(1024), nullable=False),
    Column("md5", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("declared_type", String(255), nullable=False),
    Column("sniffed_type", String(255), nullable=True),
    Column("detected_type", String(255), nullable=True),
    Column("staging_key", String(1024), nullable=True),
    Column("object_key", String(1024), nullable=True),
    Column("quarantine_key", String(1024), nullable=True),
    Column("signature", String(255), nullable=True),
    Column("engine_version", String(255), nullable=True),
    # The signature database version of the last scan, and the one a rescan was queued for.
    Column("signature_version", Integer, nullable=True),
    Column("rescan_queued_version", Integer, nullable=True),
    # Re-sends by the reconciler since the upload last moved, and when it may re-send next.
    Column("attempts", Integer, nullable=False, default=0),
    Column("resend_after", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("scanned_at", DateTime(timezone=True), nullable=True),
    Column("verified_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # An operator's release of a quarantined file, and the purge of its evidence (migration 0006).
    Column("released_by", String(255), nullable=True),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Column("release_reason", Text, nullable=True),
    Column("purged_at", DateTime(timezone=True), nullable=True),
    # The served file when the sanitize step changed it, and its renditions (migration 0005).
    Column("served_md5", String(32), nullable=True),
    Column("served_sha256", String(64), nullable=True),
    Column("served_size", BigInteger, nullable=True),
    Column("sanitize_steps", String(64), nullable=True),
    Column("renditions", JSON, nullable=True),
    # The served bytes' type when not the received one: a HEIC served as JPEG (migration 0010).
    Column("served_type", String(255), nullable=True),
    Index("ix_uploads_state_updated", "state", "updated_at"),
    Index("ix_uploads_attachment", "attachment_id"),
    Index("ix_uploads_state_sigver", "state", "signature_version"),
)

# Every release from quarantine and every purge of its evidence, appended and never changed
# (migration 0009): who, when, why, and the verdict it concerned. No foreign key: the trail
# outlives the upload's row (deleting an attachment deletes its uploads), so it names the tenant,
# profile and file itself.
quarantine_audit = Table(
    "quarantine_audit",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("upload_id", String(32), nullable=False),
    Column("tenant", String(255), nullable=True),
    Column("profile_id", String(24), nullable=True),
    Column("file_name", String(255), nullable=True),
    Column("action", String(16), nullable=False),  # core.domain.QuarantineAction
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("signature", String(255), nullable=True),
    Column("signature_version", Integer, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_quarantine_audit_upload", "upload_id"),
    Index("ix_quarantine_audit_tenant", "tenant", "seq"),
)

# A tenant's own limits (migration 0006); NULL: as the installation. They only ever narrow it.
tenant_policies = Table(
    "tenant_policies",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("max_upload_size", BigInteger, nullable=True),
    Column("allowed_types", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Hand-offs to the workers that could not reach the broker (migration 0011): sent again the
# moment it answers, by whichever process sees it first (storage/handoffs.py).
pending_dispatches = Table(
    "pending_dispatches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(64), nullable=False),
    Column("target", String(64), nullable=False),
    Column("lane", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
