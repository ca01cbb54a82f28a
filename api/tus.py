"""Resumable uploads by the tus 1.0 protocol (creation, termination, checksum, expiration), the
use case behind api/resources/tus.py: create an upload, tell its offset, take one PATCH's bytes,
terminate it; when its last byte lands it enters the pipeline as a multipart upload would.

Every call checks the token against the profile in the URL, and the upload must be that
profile's, before a byte of a body is read: a stranger's token finds nothing (404).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TypeVar

from api.auth import Authorizer
from api.names import check_object_id, clean_name, declared_type
from api.ports import Counter
from api.tus_finish import Finisher
from api.tus_write import CHECKSUMS, Checksum, ChunkWriter
from core import logs
from core.errors import (
    AttachdError,
    BadRequest,
    ObjectMissing,
    OffsetMismatch,
    UnsupportedType,
    UploadExpired,
    UploadGone,
    UploadLocked,
    UploadTooLarge,
)
from core.policy import Limits
from core.settings import Settings
from storage.engine import utcnow
from storage.objects import staging_key
from storage.tus import Resumable, ResumableObjects, ResumableRecords

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "termination", "checksum", "expiration")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
T = TypeVar("T")

# A body reader for at most `cap` bytes (over `limit`: UploadTooLarge), opened only once the
# upload's row is known, and how many bytes the body says it holds (`cap` when it does not say).
BodyOpener = Callable[[int, int], AbstractContextManager[tuple[Callable[[int], bytes], int]]]


def parse_metadata(header: str | None) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs (a key alone has no value)."""
    result: dict[str, str] = {}
    for pair in (header or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata: the value of '{key}' is not base64 UTF-8") from None
        result[key] = value
    return result


def parse_checksum(header: str | None) -> Checksum | None:
    """Upload-Checksum: `algorithm base64(digest)` of this PATCH's body."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: algorithm '{algorithm}' is not supported")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("Upload-Checksum: the checksum is not base64") from None
    return Checksum(algorithm, digest)


class Resumables:
    def __init__(
        self,
        settings: Settings,
        records: ResumableRecords,
        objects: ResumableObjects,
        authorizer: Authorizer,
        limits: Callable[[str], Limits],
        finisher: Finisher,
        counter: Counter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._records = records
        self._objects = objects
        self._auth = authorizer
        self._limits = limits
        self._finisher = finisher
        self._counter = counter
        self._clock = clock

    # --- creation -----------------------------------------------------------------------------

    def create(
        self, profile_id: str, token: str | None, length: str | None, metadata: str | None
    ) -> Resumable:
        check_object_id(profile_id)
        profile = self._auth.profile(token, profile_id)
        if length is None:
            raise BadRequest("Upload-Length is required (Upload-Defer-Length is not supported)")
        if not length.isdigit():
            raise BadRequest("Upload-Length must be a non-negative integer")
        size = int(length)
        limits = self._limits(profile.tenant)
        fields = parse_metadata(metadata)
        # tus-js-client and tuspy send `filename`; Uppy sends `name` (and `filename` too).
        raw = fields.get("filename") or fields.get("name")
        if not raw or not raw.strip():
            raise BadRequest("Upload-Metadata must name the file: 'filename' (or 'name')")
        name = clean_name(raw, self._settings.max_filename_length)
        try:
            declared = declared_type(name, limits.allowed_types)
        except UnsupportedType as exc:
            self._count_refusal(exc)
            raise
        if size > limits.max_upload_size:
            raise UploadTooLarge(limits.max_upload_size)
        if size == 0:
            raise BadRequest("The upload is empty: Upload-Length is 0")
        upload_id = uuid.uuid4().hex
        row = self._records.create_resumable(
            upload_id=upload_id,
            tenant=profile.tenant,
            profile_id=profile.id,
            length=size,
            file_name=name,
            declared_type=declared,
            metadata=metadata,
            staging_key=staging_key(upload_id),
            expires_at=self._clock() + timedelta(seconds=self._settings.tus_expiry_seconds),
        )
        self._count("created")
        with logs.bound(upload_id=row.id):  # one story per upload, from its first request
            log.info(
                "resumable upload %s created: '%s' (%s, %d bytes) for profile %s",
                row.id,
                name,
                declared,
                size,
                profile.id,
            )
        return row

    # --- the upload's URL ---------------------------------------------------------------------

    def owned(self, profile_id: str, token: str | None, upload_id: str) -> Resumable:
        """The upload, checked against the token and the profile in its URL."""
        check_object_id(profile_id)
        profile = self._auth.profile(token, profile_id)
        row = self._records.get_resumable(upload_id) if _UPLOAD_ID.fullmatch(upload_id) else None
        if row is None or row.profile_id != profile.id:
            raise UploadGone("No such resumable upload: it was terminated, expired or never made")
        return row

    def status(self, row: Resumable) -> Resumable:
        """HEAD: the upload's offset. A complete upload whose record never came (the process
        that received its last byte died) is recorded now."""
        if row.recorded_at is None and row.expired(self._clock()):
            raise UploadExpired("The upload expired before it was complete")
        if row.complete and row.recorded_at is None:
            with contextlib.suppress(UploadLocked):
                self._under_lease(row.id, None, lambda leased, owner: self._finish(leased, owner))
            row = self._records.get_resumable(row.id) or row
        return row

    def write(
        self, row: Resumable, offset: int, checksum: Checksum | None, body: BodyOpener
    ) -> int:
        """PATCH: the bytes from `offset` on; returns the new offset."""
        if row.complete:
            if offset != row.length:
                raise OffsetMismatch(f"The upload is complete: its offset is {row.length}")
            if row.recorded_at is None:
                self._under_lease(row.id, offset, lambda leased, owner: self._finish(leased, owner))
            return row.length
        if row.expired(self._clock()):
            raise UploadExpired("The upload expired before it was complete")
        if offset != row.offset:
            raise OffsetMismatch(
                f"Upload-Offset {offset} is not the upload's offset, {row.offset}: "
                "ask for it with HEAD and resume from there"
            )
        limits = self._limits(row.tenant)
        if row.length > limits.max_upload_size:
            # The tenant's limit was lowered since the upload was created.
            raise UploadTooLarge(limits.max_upload_size)

        def receive(leased: Resumable, owner: str) -> int:
            writer = ChunkWriter(
                self._records,
                self._objects,
                leased,
                owner,
                self._settings.upload_part_size,
                checksum,
            )
            remaining = leased.length - leased.offset
            with body(remaining, limits.max_upload_size) as (read, expected):
                new_offset = writer.write(read, min(expected, remaining))
            if new_offset == leased.length:
                done = self._records.get_resumable(leased.id)
                assert done is not None
                self._finish(done, owner)
            return new_offset

        return self._under_lease(row.id, offset, receive)

    def terminate(self, row: Resumable) -> None:
        """DELETE: the upload and every byte of it. One already recorded is the pipeline's: only
        its tus resource goes (the attachment route deletes the file)."""

        def drop(leased: Resumable, owner: str) -> None:
            self._objects.discard(leased)
            self._records.delete_resumable(leased.id, owner)

        self._under_lease(row.id, None, drop)
        self._count("terminated")
        with logs.bound(upload_id=row.id):
            log.info("resumable upload %s terminated at offset %d", row.id, row.offset)

    # --- inside the lease ---------------------------------------------------------------------

    def _under_lease(
        self, upload_id: str, offset: int | None, work: Callable[[Resumable, str], T]
    ) -> T:
        """`work` on the row leased to a new owner: one request at a time, on any process."""
        owner = uuid.uuid4().hex
        leased = self._records.take_lease(upload_id, owner, offset)
        try:
            return work(leased, owner)
        finally:
            with contextlib.suppress(AttachdError):
                self._records.release_lease(upload_id, owner)

    def _finish(self, row: Resumable, owner: str) -> None:
        try:
            upload = self._finisher.finish(row, lambda: self._records.renew_lease(row.id, owner))
        except UnsupportedType as exc:
            # Refused as the multipart route refuses it, and like it, nothing is left behind.
            self._count_refusal(exc)
            self._objects.discard(row)
            self._records.delete_resumable(row.id, owner)
            raise
        except ObjectMissing:
            # A whole object whose record failed long enough for the reconciler to sweep it as
            # an orphan: gone. A 404 makes tus clients start a new upload.
            log.warning("resumable upload %s: its staged object is gone; dropped", row.id)
            self._objects.discard(row)
            self._records.delete_resumable(row.id, owner)
            raise UploadGone(
                "The upload's bytes were lost before it was recorded: send it again"
            ) from None
        self._records.mark_recorded(row.id, owner)
        self._count("completed")
        with logs.bound(upload_id=upload.id):
            log.info("resumable upload %s complete: all %d bytes in", upload.id, row.length)

    def _count(self, event: str) -> None:
        if self._counter is not None:
            with contextlib.suppress(AttachdError):  # a metric must never change the answer
                self._counter.incr("resumable_uploads", event)

    def _count_refusal(self, exc: UnsupportedType) -> None:
        if self._counter is not None:
            with contextlib.suppress(AttachdError):
                self._counter.incr("typecheck_rejections", "intake", exc.reason)
