"""When a resumable upload's last byte lands: its staged object is hashed (md5, sha256), sniffed
and recorded exactly as the multipart route records an upload, then sent to scan.

The digests cannot be carried from one PATCH to the next (a hash's state does not survive a
process), so the whole object is read back once from MinIO, a buffer at a time; the pipeline's
steps read it again anyway. The record and the enqueue are api/intake.py's (record_and_send), so
a tus upload is indistinguishable from a multipart one from here on: states, reasons, events,
webhooks, metrics, log lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from api.intake import HEAD_SIZE, Received, check_head, record_and_send
from api.ports import RecordUpload, SendScan
from storage.hashing import HashingReader
from storage.records import Upload
from storage.tus import LEASE_SECONDS, Resumable, ResumableObjects

KEEP_LEASE_EVERY = LEASE_SECONDS / 4


class RecordUploads(RecordUpload, Protocol):
    def get_upload(self, upload_id: str) -> Upload | None: ...


class Finisher:
    def __init__(
        self, records: RecordUploads, objects: ResumableObjects, enqueue: SendScan
    ) -> None:
        self._records = records
        self._objects = objects
        self._enqueue = enqueue

    def finish(self, row: Resumable, keep_lease: Callable[[], None] | None = None) -> Upload:
        """Idempotent: a row whose upload was recorded by an earlier attempt (that died before it
        could say so) gets that upload back, never a second one. `keep_lease` is called as the
        object is read back, so reading a large one does not let the lease lapse."""
        existing = self._records.get_upload(row.id)
        if existing is not None:
            return existing
        store = self._objects.store
        source = store.open_reader(self._objects.staging, row.staging_key, row.length)
        reader = HashingReader(source.read, row.length, HEAD_SIZE)
        since = time.monotonic()
        while reader.read(1 << 20):
            if keep_lease is not None and time.monotonic() - since > KEEP_LEASE_EVERY:
                keep_lease()
                since = time.monotonic()
        # Refused (415 CONTENT_MISMATCH) as the multipart route refuses it; the caller discards.
        sniffed = check_head(row.file_name, row.declared_type, reader.head)
        _attachment, upload = record_and_send(
            self._records,
            self._enqueue,
            Received(
                upload_id=row.id,
                profile_id=row.profile_id,
                tenant=row.tenant,
                name=row.file_name,
                declared=row.declared_type,
                sniffed=sniffed,
                reader=reader,
                staging_key=row.staging_key,
            ),
        )
        return upload
