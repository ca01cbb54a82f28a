"""Receiving one upload: a single pass over the multipart body into MinIO staging, then the record.

The order of checks follows what the body lets us know when: a token and a file name that arrive
before the file part are checked before a byte is stored; ones that arrive after it are checked at
the end, and the staged object is removed if they fail. Whatever goes wrong after the object is
written, it is deleted: no object without a record, no record without an object.
"""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from api.auth import Authorizer
from api.crafter import OBJECT_ID
from attachd import filetypes
from attachd.errors import (
    AttachdError,
    BadRequest,
    RequestTimeout,
    UnsupportedType,
)
from attachd.settings import Settings
from storage.hashing import HashingReader
from storage.objects import ObjectStore, staging_key
from storage.records import Attachment, Profile, RecordStore, Upload

log = logging.getLogger(__name__)

TOKEN_FIELD = "accessTokenId"
FILE_FIELD = "attachment"
NAME_FIELD = "filename"


class Part(Protocol):
    """What we need of a multipart body part (Falcon's BodyPart fits)."""

    name: str | None
    filename: str | None

    def get_text(self) -> str | None: ...

    @property
    def stream(self) -> Any: ...


@dataclass
class _Staged:
    key: str
    reader: HashingReader
    raw_name: str | None


def check_object_id(value: str, what: str = "profile") -> None:
    if not OBJECT_ID.match(value):
        raise BadRequest(f"Invalid {what} ID \"{value}\": expected 24 lowercase hex characters")


def clean_name(raw: str | None, max_length: int) -> str:
    """The attachment's name as given (with extension): refuse what no file system or client
    should have to deal with, rather than silently rewriting it."""
    if raw is None or not raw.strip():
        raise BadRequest("The attachment has no file name")
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) > max_length:
        raise BadRequest(f"The file name is longer than {max_length} characters")
    for ch in name:
        # Control characters and format characters (NUL, right-to-left override...) disguise names.
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            raise BadRequest(f"The file name contains a forbidden character U+{ord(ch):04X}")
    if name in (".", "..") or not filetypes.base_name(name).strip():
        raise BadRequest("The file name is empty once its path and extension are removed")
    if name != name.strip() or name.endswith("."):
        raise BadRequest("The file name must not end with a dot or a space")
    return name


class UploadReceiver:
    def __init__(
        self,
        settings: Settings,
        records: RecordStore,
        objects: ObjectStore,
        authorizer: Authorizer,
        enqueue: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._records = records
        self._objects = objects
        self._auth = authorizer
        self._enqueue = enqueue

    def decide_type(self, name: str) -> str:
        content_type = filetypes.type_for_name(name)
        if content_type not in self._settings.allowed_types:
            raise UnsupportedType(
                f"The file type {content_type} of '{name}' is not allowed; allowed types: "
                + ", ".join(self._settings.allowed_types)
            )
        return content_type

    def receive(
        self, profile_id: str, query_token: str | None, parts: Iterable[Part], deadline: float
    ) -> tuple[Attachment, Upload]:
        check_object_id(profile_id)
        token = query_token
        profile: Profile | None = self._auth.profile(token, profile_id) if token else None
        name_field: str | None = None
        staged: _Staged | None = None
        try:
            for part in parts:
                if part.name == TOKEN_FIELD:
                    value = part.get_text()
                    # Like a servlet's getParameter, the query string comes first.
                    if token is None:
                        token = value
                        profile = self._auth.profile(token, profile_id)
                elif part.name == NAME_FIELD:
                    value = part.get_text()
                    if value and value.strip():
                        name_field = value
                elif part.name == FILE_FIELD:
                    if staged is not None:
                        raise BadRequest("The request holds more than one 'attachment' part")
                    if profile is not None:
                        # Everything needed to refuse early is here: fail before storing a byte.
                        self.decide_type(clean_name(name_field or part.filename, self._max_name))
                    staged = self._stage(part, deadline)
            if staged is None:
                raise BadRequest("The request has no 'attachment' file part")
            if profile is None:
                profile = self._auth.profile(token, profile_id)
            return self._record(profile, staged, name_field)
        except BaseException:
            if staged is not None:
                self._discard(staged.key)
            raise

    @property
    def _max_name(self) -> int:
        return self._settings.max_filename_length

    def _stage(self, part: Part, deadline: float) -> _Staged:
        upload_id = uuid.uuid4().hex
        key = staging_key(upload_id)
        read = part.stream.read

        def timed_read(size: int) -> bytes:
            if time.monotonic() > deadline:
                raise RequestTimeout("The upload took too long: the client sent too slowly")
            return bytes(read(size))

        reader = HashingReader(timed_read, self._settings.max_upload_size)
        staged = _Staged(key=key, reader=reader, raw_name=part.filename)
        try:
            self._objects.put_stream(
                self._settings.bucket_staging,
                key,
                reader,  # type: ignore[arg-type]
                "application/octet-stream",
                self._settings.upload_part_size,
            )
        except BaseException:
            # put_stream aborted a multipart upload; a single-part PUT may still have landed.
            self._discard(key)
            raise
        return staged

    def _record(self, profile: Profile, staged: _Staged, name_field: str | None) -> tuple[Attachment, Upload]:
        name = clean_name(name_field or staged.raw_name, self._max_name)
        declared = self.decide_type(name)
        reader = staged.reader
        if reader.size == 0:
            raise BadRequest("The 'attachment' part is empty")
        agrees, sniffed = filetypes.head_agrees(declared, reader.head)
        if not agrees:
            raise UnsupportedType(
                f"The content of '{name}' is {sniffed}, which does not match its type {declared}"
            )
        upload_id = staged.key.rsplit("/", 1)[-1]
        attachment, upload = self._records.record_upload(
            upload_id=upload_id,
            profile_id=profile.id,
            file_name=filetypes.base_name(name),
            original_name=name,
            md5=reader.md5.hexdigest(),
            sha256=reader.sha256.hexdigest(),
            size=reader.size,
            declared_type=declared,
            sniffed_type=sniffed,
            staging_key=staged.key,
        )
        # After commit: a task must never run before the row it reads exists. If the broker is
        # down the upload stays `staged` and the reconciler sends it later; the client still
        # gets its answer.
        try:
            self._enqueue(upload.id)
        except Exception:
            log.warning("enqueue failed; the reconciler will send it", extra={"upload_id": upload.id})
        return attachment, upload

    def _discard(self, key: str) -> None:
        try:
            self._objects.delete(self._settings.bucket_staging, key)
        except AttachdError:
            # The staging lifecycle rule and the reconciler's orphan sweep remove it later.
            log.warning("could not delete staged object %s", key)
