"""Writing one PATCH of a resumable upload: its bytes go into S3 parts, at most one part in memory,
and what is left over into a new incomplete part; the offset moves by compare-and-set.

Bytes are committed as they become durable: each full part as soon as MinIO has it, and, when
the client goes away mid-PATCH, whatever had arrived (the spec asks servers to keep as much as
they can). A PATCH carrying Upload-Checksum commits only at its end, once the chunk is verified:
a chunk that fails it is discarded whole (parts sent meanwhile are never listed in the final
object, and their numbers are reused by the next PATCH).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import AttachdError, BadRequest, ChecksumMismatch
from storage.tus import (
    LEASE_SECONDS,
    Progress,
    Resumable,
    ResumableObjects,
    new_incomplete_key,
)

# What is asked of the body per read: small enough that a part is never overshot by much.
READ_SIZE = 64 * 1024

# Upload-Checksum algorithms (tus checksum extension), by the names clients send.
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
}


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


class _Buffer:
    """A fixed-size buffer filled in place: growing a bytearray would copy it on the way."""

    def __init__(self, capacity: int) -> None:
        self._data = bytearray(capacity)
        self._view = memoryview(self._data)
        self.size = 0

    @property
    def room(self) -> int:
        return len(self._data) - self.size

    def add(self, chunk: bytes) -> None:
        end = self.size + len(chunk)
        if end > len(self._data):
            # Never: reads ask for at most the room left, and the body for at most `expected`.
            raise BadRequest("The request body is longer than it said")
        self._view[self.size : end] = chunk
        self.size = end

    def view(self) -> memoryview:
        return self._view[: self.size]

    def clear(self) -> None:
        self.size = 0


class LeaseWrites(Protocol):
    """What a writer needs of the record store (storage.tus.ResumableRecords)."""

    def renew_lease(self, upload_id: str, owner: str) -> None: ...

    def commit_offset(
        self, upload_id: str, owner: str, old_offset: int, progress: Progress
    ) -> None: ...


class ChunkWriter:
    """One PATCH's bytes, from the row's committed offset on, under the lease held by `owner`."""

    def __init__(
        self,
        records: LeaseWrites,
        objects: ResumableObjects,
        row: Resumable,
        owner: str,
        part_size: int,
        checksum: Checksum | None,
    ) -> None:
        self._records = records
        self._objects = objects
        self._row = row
        self._owner = owner
        self._part_size = part_size
        self._checksum = checksum
        self._hasher = CHECKSUMS[checksum.algorithm]() if checksum else None
        self._committed = row.offset
        self._progress = Progress(
            row.multipart_id, list(row.parts), row.incomplete_key, row.incomplete_size
        )
        # Incomplete part objects this PATCH made stale; deleted once no commit refers to them.
        self._stale: list[str] = []
        self._renewed = time.monotonic()
        self.received = 0

    @property
    def offset(self) -> int:
        return self._committed

    def write(self, read: Callable[[int], bytes], expected: int) -> int:
        """Reads the body (at most `expected` bytes) to its end; returns the committed offset."""
        row = self._row
        # One buffer of at most a part for the whole PATCH, sized for what can come, and handed
        # to MinIO as it is: no copy of a part is ever made.
        capacity = min(self._part_size, row.incomplete_size + expected)
        buffer = _Buffer(capacity)
        if row.incomplete_key:
            for piece in self._objects.iter_incomplete(row.incomplete_key, row.incomplete_size):
                buffer.add(piece)
        try:
            while True:
                chunk = read(min(READ_SIZE, buffer.room))
                if not chunk:
                    break
                self.received += len(chunk)
                if self._hasher is not None:
                    self._hasher.update(chunk)
                buffer.add(chunk)
                if buffer.size == self._part_size:
                    self._send_part(buffer.view())
                    buffer.clear()
                self._keep_lease()
        except BadRequest:
            # The client went away or stalled mid-PATCH (a 400 or 408 of the body reader):
            # what arrived is kept, unless a checksum was promised for the whole chunk.
            if self._hasher is None and self.received:
                self._save(buffer.view())
            else:
                self._drop_uncommitted_multipart()
            raise
        checksum, hasher = self._checksum, self._hasher
        if checksum and hasher and not hmac.compare_digest(hasher.digest(), checksum.digest):
            self._drop_uncommitted_multipart()
            raise ChecksumMismatch(
                f"The chunk does not match its {checksum.algorithm} Upload-Checksum; "
                "it was discarded"
            )
        if sum(p.size for p in self._progress.parts) + buffer.size == row.length:
            self._finish(buffer.view())
        elif self.received:
            self._save(buffer.view())
        self._forget_stale()
        return self._committed

    def _drop_uncommitted_multipart(self) -> None:
        # A multipart upload this PATCH started is in no committed row: nothing else would abort it.
        multipart_id = self._progress.multipart_id
        if multipart_id and self._row.multipart_id is None:
            with contextlib.suppress(AttachdError):
                self._objects.abort_multipart(self._row.staging_key, multipart_id)

    def _keep_lease(self) -> None:
        # A slow client may take long over one part: the lease must not lapse under it.
        if time.monotonic() - self._renewed > LEASE_SECONDS / 4:
            self._records.renew_lease(self._row.id, self._owner)
            self._renewed = time.monotonic()

    def _send_part(self, data: memoryview) -> None:
        progress, row = self._progress, self._row
        if progress.multipart_id is None:
            progress.multipart_id = self._objects.start_multipart(row.staging_key)
        number = len(progress.parts) + 1
        progress.parts.append(
            self._objects.upload_part(row.staging_key, progress.multipart_id, number, data)
        )
        if progress.incomplete_key:
            self._stale.append(progress.incomplete_key)
        progress.incomplete_key, progress.incomplete_size = None, 0
        if self._hasher is None:
            self._commit()

    def _save(self, buffer: memoryview) -> None:
        """The bytes after the last part, as a new incomplete part object."""
        progress = self._progress
        if progress.incomplete_key:
            self._stale.append(progress.incomplete_key)
        progress.incomplete_key, progress.incomplete_size = None, 0
        if buffer:
            key = new_incomplete_key(self._row.id)
            self._objects.put_incomplete(key, buffer)
            progress.incomplete_key, progress.incomplete_size = key, len(buffer)
        self._commit()

    def _finish(self, buffer: memoryview) -> None:
        """The last byte is in: the staged object is made whole, the offset reaches length."""
        progress, row = self._progress, self._row
        if progress.multipart_id is None:
            # The whole file fits in one part: one PUT, no multipart upload.
            self._objects.put_whole(row.staging_key, buffer)
            progress.whole = len(buffer)
        else:
            if buffer:
                number = len(progress.parts) + 1
                progress.parts.append(
                    self._objects.upload_part(
                        row.staging_key, progress.multipart_id, number, buffer
                    )
                )
            self._objects.complete_multipart(row.staging_key, progress.multipart_id, progress.parts)
        if progress.incomplete_key:
            self._stale.append(progress.incomplete_key)
        progress.incomplete_key, progress.incomplete_size = None, 0
        self._commit()

    def _commit(self) -> None:
        self._records.commit_offset(self._row.id, self._owner, self._committed, self._progress)
        self._committed = self._progress.offset
        self._renewed = time.monotonic()

    def _forget_stale(self) -> None:
        stale, self._stale = self._stale, []
        for key in stale:
            # Also swept with the whole upload when it is recorded, terminated or reaped.
            with contextlib.suppress(AttachdError):
                self._objects.delete_incomplete(key)
