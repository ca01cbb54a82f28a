"""Resumable (tus) uploads in the record store and in MinIO: the row whose offset moves only by
compare-and-set under a lease, and the bytes behind it.

The bytes of an upload being received are kept as tusd's S3 store keeps them: full parts of an S3
multipart upload whose final object is the upload's staging key (so the pipeline finds it where a
multipart upload would have put it), and the bytes after the last part, fewer than a part, in an
"incomplete part" object of their own bucket, read back and completed by the next PATCH. Nothing
of either is the pipeline's until the row is recorded.

One request writes at a time, on any API process: it takes the row's lease (a compare-and-set on
`lease_until`), renews it while it reads, and commits every move of the offset with a
compare-and-set on the old offset that also checks the lease is still its own.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from minio.datatypes import Part
from sqlalchemy import Row, delete, insert, or_, select, update

from core.errors import ObjectMissing, OffsetMismatch, UploadGone, UploadLocked
from storage.engine import EngineBound, as_utc, utcnow
from storage.objects import ObjectStore
from storage.tus_schema import resumable_uploads

t = resumable_uploads.c

# A request that stops renewing its lease (its process died) blocks its upload this long.
LEASE_SECONDS = 60


@dataclass(frozen=True)
class StoredPart:
    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class Resumable:
    id: str
    tenant: str
    profile_id: str
    length: int
    offset: int
    file_name: str
    declared_type: str
    metadata: str | None
    staging_key: str
    multipart_id: str | None
    parts: tuple[StoredPart, ...]
    incomplete_key: str | None
    incomplete_size: int
    expires_at: datetime
    created_at: datetime
    recorded_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.offset == self.length

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass
class Progress:
    """What a writer has stored since it took the lease, to be committed as the new offset."""

    multipart_id: str | None
    parts: list[StoredPart] = field(default_factory=list)
    incomplete_key: str | None = None
    incomplete_size: int = 0
    # A file that fit in one part, stored whole with one PUT when its last byte came.
    whole: int = 0

    @property
    def offset(self) -> int:
        return self.whole + sum(p.size for p in self.parts) + self.incomplete_size


def _from_row(row: Row[Any]) -> Resumable:
    m = row._mapping
    return Resumable(
        id=m[t.id],
        tenant=m[t.tenant],
        profile_id=m[t.profile_id],
        length=m[t.length],
        offset=m[t.offset],
        file_name=m[t.file_name],
        declared_type=m[t.declared_type],
        metadata=m[t.metadata],
        staging_key=m[t.staging_key],
        multipart_id=m[t.multipart_id],
        parts=tuple(StoredPart(p["n"], p["etag"], p["size"]) for p in m[t.parts] or ()),
        incomplete_key=m[t.incomplete_key],
        incomplete_size=m[t.incomplete_size],
        expires_at=as_utc(m[t.expires_at]) or utcnow(),
        created_at=as_utc(m[t.created_at]) or utcnow(),
        recorded_at=as_utc(m[t.recorded_at]),
        lease_owner=m[t.lease_owner],
        lease_until=as_utc(m[t.lease_until]),
    )


def _parts_json(parts: Sequence[StoredPart]) -> list[dict[str, Any]]:
    return [{"n": p.number, "etag": p.etag, "size": p.size} for p in parts]


class ResumableRecords(EngineBound):
    """The rows of resumable uploads. Every write but creation is conditional on the lease."""

    def create_resumable(
        self,
        *,
        upload_id: str,
        tenant: str,
        profile_id: str,
        length: int,
        file_name: str,
        declared_type: str,
        metadata: str | None,
        staging_key: str,
        expires_at: datetime,
    ) -> Resumable:
        now = utcnow()
        values = {
            "id": upload_id,
            "tenant": tenant,
            "profile_id": profile_id,
            "length": length,
            "offset": 0,
            "file_name": file_name,
            "declared_type": declared_type,
            "metadata": metadata,
            "staging_key": staging_key,
            "multipart_id": None,
            "parts": [],
            "incomplete_key": None,
            "incomplete_size": 0,
            "expires_at": expires_at,
            "created_at": now,
            "updated_at": now,
        }
        with self.transaction() as conn:
            conn.execute(insert(resumable_uploads).values(**values))
        found = self.get_resumable(upload_id)
        assert found is not None
        return found

    def get_resumable(self, upload_id: str) -> Resumable | None:
        with self.transaction() as conn:
            row = conn.execute(select(resumable_uploads).where(t.id == upload_id)).first()
        return _from_row(row) if row is not None else None

    def take_lease(
        self, upload_id: str, owner: str, offset: int | None = None, now: datetime | None = None
    ) -> Resumable:
        """The row, leased to `owner` for LEASE_SECONDS: OffsetMismatch when `offset` is given and
        is not the stored one, UploadLocked while another request holds it, UploadGone when the
        row is not there."""
        now = now or utcnow()
        where = [
            t.id == upload_id,
            or_(t.lease_until.is_(None), t.lease_until < now),
        ]
        if offset is not None:
            where.append(t.offset == offset)
        with self.transaction() as conn:
            taken = conn.execute(
                update(resumable_uploads)
                .where(*where)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_SECONDS))
            ).rowcount
        row = self.get_resumable(upload_id)
        if row is None:
            raise UploadGone("The upload does not exist, or was terminated or expired")
        if taken == 1:
            return row
        if offset is not None and row.offset != offset:
            raise OffsetMismatch(
                f"Upload-Offset {offset} is not the upload's offset, {row.offset}: "
                "ask for it with HEAD and resume from there"
            )
        raise UploadLocked("Another request is writing this upload now; retry after it ends")

    def renew_lease(self, upload_id: str, owner: str) -> None:
        now = utcnow()
        with self.transaction() as conn:
            renewed = conn.execute(
                update(resumable_uploads)
                .where(t.id == upload_id, t.lease_owner == owner)
                .values(lease_until=now + timedelta(seconds=LEASE_SECONDS))
            ).rowcount
        if renewed != 1:
            raise UploadLocked("The upload's lease was lost to another request")

    def release_lease(self, upload_id: str, owner: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(resumable_uploads)
                .where(t.id == upload_id, t.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def commit_offset(
        self, upload_id: str, owner: str, old_offset: int, progress: Progress
    ) -> None:
        """Move the offset from `old_offset` to what `progress` holds; UploadLocked when the
        lease is not `owner`'s any more or the offset moved under it (nothing is committed)."""
        now = utcnow()
        with self.transaction() as conn:
            moved = conn.execute(
                update(resumable_uploads)
                .where(t.id == upload_id, t.lease_owner == owner, t.offset == old_offset)
                .values(
                    offset=progress.offset,
                    multipart_id=progress.multipart_id,
                    parts=_parts_json(progress.parts),
                    incomplete_key=progress.incomplete_key,
                    incomplete_size=progress.incomplete_size,
                    lease_until=now + timedelta(seconds=LEASE_SECONDS),
                    updated_at=now,
                )
            ).rowcount
        if moved != 1:
            raise UploadLocked("The upload's lease was lost to another request")

    def mark_recorded(self, upload_id: str, owner: str) -> None:
        now = utcnow()
        with self.transaction() as conn:
            conn.execute(
                update(resumable_uploads)
                .where(t.id == upload_id, t.lease_owner == owner)
                .values(recorded_at=now, updated_at=now)
            )

    def delete_resumable(self, upload_id: str, owner: str) -> bool:
        with self.transaction() as conn:
            gone = conn.execute(
                delete(resumable_uploads).where(t.id == upload_id, t.lease_owner == owner)
            ).rowcount
        return gone == 1

    def expired_resumables(self, now: datetime, limit: int = 200) -> list[Resumable]:
        with self.transaction() as conn:
            rows = conn.execute(
                select(resumable_uploads)
                .where(t.expires_at <= now)
                .order_by(t.expires_at)
                .limit(limit)
            ).all()
        return [_from_row(r) for r in rows]

    def count_resumables(self) -> int:
        with self.transaction() as conn:
            return len(conn.execute(select(t.id)).all())


_OCTETS = {"Content-Type": "application/octet-stream"}


def new_incomplete_key(upload_id: str) -> str:
    # A fresh key per write: the committed one is never overwritten by a write that may not be.
    return f"{upload_id}/{uuid.uuid4().hex}"


class ResumableObjects:
    """The bytes of resumable uploads: S3 multipart parts in the staging bucket, incomplete
    parts in their own bucket (made on first use, with an expiry rule as a backstop)."""

    def __init__(self, store: ObjectStore, bucket: str, expiry_days: int) -> None:
        self.store = store
        self.staging = store.buckets.staging
        self.bucket = bucket
        self._expiry_days = expiry_days
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            self.store.ensure_expiring_bucket(self.bucket, self._expiry_days)
            self._ready = True

    def start_multipart(self, key: str) -> str:
        client = self.store.client
        return str(
            self.store.call(
                client._create_multipart_upload,
                self.staging,
                key,
                {"Content-Type": "application/octet-stream"},
            )
        )

    def upload_part(self, key: str, multipart_id: str, number: int, data: memoryview) -> StoredPart:
        client = self.store.client
        etag = self.store.call(
            client._upload_part, self.staging, key, data, None, multipart_id, number
        )
        return StoredPart(number, str(etag), len(data))

    def complete_multipart(self, key: str, multipart_id: str, parts: Sequence[StoredPart]) -> None:
        client = self.store.client
        self.store.call(
            client._complete_multipart_upload,
            self.staging,
            key,
            multipart_id,
            [Part(p.number, p.etag) for p in parts],
        )

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        client = self.store.client
        # Already aborted, completed or dropped by MinIO: nothing is left either way.
        with contextlib.suppress(ObjectMissing):
            self.store.call(client._abort_multipart_upload, self.staging, key, multipart_id)

    # The SDK's own PutObject and UploadPart calls take the caller's buffer as it is (the
    # request body, hashed in place): its put_object would read a stream into a copy first.

    def put_whole(self, key: str, data: memoryview) -> None:
        """A file that fits in one part goes to staging with a single PUT."""
        self.store.call(self.store.client._put_object, self.staging, key, data, _OCTETS)

    def put_incomplete(self, key: str, data: memoryview) -> None:
        self._ensure()
        self.store.call(self.store.client._put_object, self.bucket, key, data, _OCTETS)

    def iter_incomplete(self, key: str, size: int) -> Iterator[bytes]:
        """The committed bytes of an incomplete part, a buffer at a time."""
        if size:
            yield from self.store.iter_range(self.bucket, key, 0, size)

    def delete_incomplete(self, key: str) -> None:
        self._ensure()
        self.store.delete(self.bucket, key)

    def incomplete_keys(self, upload_id: str) -> list[str]:
        self._ensure()
        return [k for k, _ in self.store.list_keys(self.bucket, prefix=f"{upload_id}/")]

    def discard(self, row: Resumable) -> None:
        """Every byte of an upload that will never be recorded: its multipart upload, its staged
        object (a completed one whose record never came), every incomplete part ever written."""
        if row.multipart_id:
            self.abort_multipart(row.staging_key, row.multipart_id)
        if row.recorded_at is None:
            self.store.delete(self.staging, row.staging_key)
        for key in self.incomplete_keys(row.id):
            self.store.delete(self.bucket, key)
