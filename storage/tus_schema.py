"""The table of resumable (tus) uploads still being received (migration 0008). On the record
store's own metadata and engine; a row lives from the upload's creation until it is reaped after
its expiry, and becomes an `uploads` row (the pipeline's) when its last byte lands."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, String, Table, Text

from storage.schema import metadata

resumable_uploads = Table(
    "resumable_uploads",
    metadata,
    # Also the id of the pipeline's upload it becomes, and of its staging object.
    Column("id", String(32), primary_key=True),
    Column("tenant", String(255), nullable=False),
    Column("profile_id", String(24), nullable=False),
    Column("length", BigInteger, nullable=False),
    # Bytes stored for good: the parts' sizes plus the incomplete part's. Moved only by a
    # compare-and-set on its old value, by the holder of the lease.
    Column("offset", BigInteger, nullable=False),
    Column("file_name", String(1024), nullable=False),
    Column("declared_type", String(255), nullable=False),
    # The client's Upload-Metadata header as sent: HEAD answers it back.
    Column("metadata", Text, nullable=True),
    Column("staging_key", String(1024), nullable=False),
    # The S3 multipart upload and its committed parts [{"n", "etag", "size"}], once one is sent.
    Column("multipart_id", String(1024), nullable=True),
    Column("parts", JSON, nullable=False),
    # Bytes after the last part, fewer than a part, in an object of their own (tusd's
    # "incomplete part"); a new key each time, so a write that is never committed harms nothing.
    Column("incomplete_key", String(1024), nullable=True),
    Column("incomplete_size", BigInteger, nullable=False),
    # Who may write now (one request on any API process) and until when, renewed as it reads.
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    # Set once the pipeline's upload row exists: the file is the pipeline's from then on.
    Column("recorded_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_resumable_uploads_expires", "expires_at"),
)
