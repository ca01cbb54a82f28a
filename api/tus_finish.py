"""When a resumable upload's last byte lands: its staged object is hashed (md5, sha256), sniffed
and recorded exactly as the multipart route records an upload, then sent to scan.

The digests cannot be carried from one PATCH to the next (a hash's state does not survive a
process), so the whole object is read back once from MinIO, a buffer at a time; the pipeline's
steps read it again anyway. The record and the enqueue repeat api/intake.py's few lines (the same
store call, log line and logger), so a tus upload is indistinguishable from a multipart one from
here on: states, reasons, events, webhooks, metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from api.intake import HEAD_SIZE, check_head
from api.ports import SendScan
from core import filetypes, logs
from storage.hashing import HashingReader
from storage.records import Attachment, Upload
from storage.tus import LEASE_SECONDS, Resumable, ResumableObjects

KEEP_LEASE_EVERY = LEASE_SECONDS / 4

# The multipart route's logger: one story per upload, whichever route brought it.
intake_log = logging.getLogger("api.intake")


class RecordUploads(Protocol):
    def get_upload(self, upload_id: str) -> Upload | None: ...

    def record_upload(
        self,
        *,
        upload_id: str,
        profile_id: str,
        file_name: str,
        original_name: str,
        md5: str,
        sha256: str,
        size: int,
        declared_type: str,
        sniffed_type: str | None,
        staging_key: str,
    ) -> tuple[Attachment, Upload]: ...


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
        _attachment, upload = self._records.record_upload(
            upload_id=row.id,
            profile_id=row.profile_id,
            file_name=filetypes.base_name(row.file_name),
            original_name=row.file_name,
            md5=reader.md5.hexdigest(),
            sha256=reader.sha256.hexdigest(),
            size=reader.size,
            declared_type=row.declared_type,
            sniffed_type=sniffed,
            staging_key=row.staging_key,
        )
        # As api/intake.py: after commit; a dead broker leaves it `staged` for the reconciler.
        try:
            self._enqueue(upload.id)
        except Exception:
            intake_log.warning(
                "enqueue of upload %s failed; the reconciler will send it", upload.id
            )
        else:
            with logs.bound(upload_id=upload.id):
                intake_log.info(
                    "upload %s received: '%s' (%s, %d bytes) for profile %s; sent to scan",
                    upload.id,
                    row.file_name,
                    row.declared_type,
                    reader.size,
                    row.profile_id,
                )
        return upload
