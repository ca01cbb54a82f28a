"""Receiving one upload: a single pass over the form's parts into MinIO staging, hashing as it
goes, then the record, then the scan task.

The order of checks follows what the body lets us know when: the token (query string, or a form
field before the file part, as Crafter's Java client sends it) and a file name that arrive before
the file part are checked before a byte is stored, and the content must agree with the name as
soon as its first 4 KiB are in. A file part with no token before it is refused (403) before a byte
of it is read: a stranger cannot make us store anything. Whatever goes wrong after the object is
written, it is deleted: no object without a record, no record without an object.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from api.auth import Authorizer
from api.form import FILE_FIELD, NAME_FIELD, TOKEN_FIELD, Part
from api.names import check_object_id, clean_name, declared_type
from api.ports import Objects, Records, RecordUpload, SendScan
from core import filetypes, logs
from core.domain import Reason
from core.errors import AccessDenied, AttachdError, BadRequest, UnsupportedType
from core.policy import Limits
from core.settings import Settings
from storage.hashing import HashingReader
from storage.objects import staging_key
from storage.records import Attachment, Profile, Upload

log = logging.getLogger(__name__)

# What libmagic sees of the content, and when the content's type is checked against its name.
HEAD_SIZE = 4096


def check_head(name: str, declared: str, head: bytes) -> str:
    """The sniffed type of the content's head, which must agree with the declared type."""
    if not head:
        raise BadRequest("The 'attachment' part is empty")
    agrees, sniffed = filetypes.head_agrees(declared, head)
    if not agrees:
        raise UnsupportedType(
            Reason.CONTENT_MISMATCH,
            f"The content of '{name}' is {filetypes.describe(sniffed)}, not {declared}",
        )
    return sniffed


@dataclass
class _Staged:
    key: str
    reader: HashingReader
    raw_name: str | None
    # The tenant's effective limits (core.policy), read once for the whole upload.
    limits: Limits


@dataclass(frozen=True)
class Received:
    """An upload whose bytes are staged, hashed and sniffed, ready to be recorded."""

    upload_id: str
    profile_id: str
    tenant: str
    name: str  # the cleaned file name, extension included
    declared: str
    sniffed: str
    reader: HashingReader  # its digests, size and head
    staging_key: str


def record_and_send(
    records: RecordUpload, enqueue: SendScan, got: Received, bulk: bool = False
) -> tuple[Attachment, Upload]:
    """Record a received upload and send it to scan: the same for every route that receives
    one (multipart here, tus in api/tus_finish.py), so from here on an upload is the same
    whichever way it came: states, reasons, events, webhooks, metrics, this log line."""
    reader = got.reader
    attachment, upload = records.record_upload(
        upload_id=got.upload_id,
        profile_id=got.profile_id,
        file_name=filetypes.base_name(got.name),
        original_name=got.name,
        md5=reader.md5.hexdigest(),
        sha256=reader.sha256.hexdigest(),
        size=reader.size,
        declared_type=got.declared,
        sniffed_type=got.sniffed,
        staging_key=got.staging_key,
    )
    # Logged before it is sent: a worker may take it and log its scan before this line would be
    # written otherwise, and the story of an upload must read in order.
    with logs.bound(upload_id=upload.id):  # as the workers' lines carry it
        log.info(
            "upload %s received: '%s' (%s, %d bytes) for profile %s; sending it to scan",
            upload.id,
            got.name,
            got.declared,
            reader.size,
            got.profile_id,
        )
    # After commit: a task must never run before the row it reads exists. If the broker is down
    # the upload stays `staged`, its hand-off is kept and sent the moment the broker answers
    # (storage/handoffs.py; the reconciler is the last resort); the client still gets its
    # answer.
    try:
        enqueue(upload.id, got.tenant, bulk=bulk)
    except Exception:
        log.warning("upload %s not sent to scan yet: the broker is unreachable", upload.id)
    return attachment, upload


class _HeadCheck:
    """Reads the file part for the hashing reader and runs `check` on the first HEAD_SIZE bytes
    (or on all of them, if fewer) before reading on: content that contradicts its name fails
    after a few KiB, not after the whole file has been stored."""

    def __init__(self, read: Callable[[int], bytes], check: Callable[[bytes], object] | None):
        self._read = read
        self._check = check
        self._head = b""

    def __call__(self, size: int) -> bytes:
        if self._check is None:
            return bytes(self._read(size))
        data = bytes(self._read(min(size, HEAD_SIZE - len(self._head))))
        self._head += data
        if len(self._head) >= HEAD_SIZE or not data:
            check, self._check = self._check, None
            check(self._head)
        return data


class UploadReceiver:
    def __init__(
        self,
        settings: Settings,
        records: Records,
        objects: Objects,
        authorizer: Authorizer,
        enqueue: SendScan,
        limits: Callable[[str], Limits] | None = None,
    ) -> None:
        self._settings = settings
        # A tenant's limits (api/policy.py's cache); without one, the installation's for all.
        installation = Limits(settings.max_upload_size, settings.allowed_types)
        self._limits = limits or (lambda _tenant: installation)
        self._records = records
        self._objects = objects
        self._auth = authorizer
        self._enqueue = enqueue

    def receive(
        self, profile_id: str, query_token: str | None, parts: Iterable[Part], bulk: bool = False
    ) -> tuple[Attachment, Upload]:
        """`bulk`: the client sends this upload as bulk work (an import), which waits behind
        every tenant's interactive uploads (core.tasks.Lane)."""
        check_object_id(profile_id)
        token = query_token
        profile: Profile | None = self._auth.profile(token, profile_id) if token else None
        name_field: str | None = None
        staged: _Staged | None = None
        try:
            for part in parts:
                if part.name == TOKEN_FIELD:
                    # Like a servlet's getParameter, the query string comes first.
                    if token is None:
                        token = part.get_text() or None
                        profile = self._auth.profile(token, profile_id)
                elif part.name == NAME_FIELD:
                    value = part.get_text()
                    if value and value.strip():
                        name_field = value
                elif part.name == FILE_FIELD:
                    if profile is None:
                        raise AccessDenied(
                            "No access token found before the 'attachment' part: send "
                            "'accessTokenId' in the query string or as a form field before the file"
                        )
                    if staged is not None:
                        raise BadRequest("The request holds more than one 'attachment' part")
                    limits = self._limits(profile.tenant)
                    staged = self._stage(part, name_field or part.filename, limits)
            if staged is None:
                raise BadRequest("The request has no 'attachment' file part")
            if profile is None:
                profile = self._auth.profile(token, profile_id)
            return self._record(profile, staged, name_field, bulk)
        except BaseException:
            if staged is not None:
                self._discard(staged.key)
            raise

    def _stage(self, part: Part, known_name: str | None, limits: Limits) -> _Staged:
        check: Callable[[bytes], object] | None = None
        if known_name:
            # Everything needed to refuse on the name is here: fail before storing a byte. A
            # `filename` field sent after the file part still names the attachment, but cannot
            # rescue a part whose own name is refused (Crafter's client sends it before).
            name = clean_name(known_name, self._settings.max_filename_length)
            declared = declared_type(name, limits.allowed_types)
            check = functools.partial(check_head, name, declared)
        key = staging_key(uuid.uuid4().hex)
        reader = HashingReader(
            # Over the tenant's size, the read fails mid-stream: the part in flight is aborted
            # and nothing past the limit is stored.
            _HeadCheck(part.stream.read, check),
            limits.max_upload_size,
            HEAD_SIZE,
        )
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
        return _Staged(key=key, reader=reader, raw_name=part.filename, limits=limits)

    def _record(
        self, profile: Profile, staged: _Staged, name_field: str | None, bulk: bool
    ) -> tuple[Attachment, Upload]:
        name = clean_name(name_field or staged.raw_name, self._settings.max_filename_length)
        declared = declared_type(name, staged.limits.allowed_types)
        reader = staged.reader
        sniffed = check_head(name, declared, reader.head)
        return record_and_send(
            self._records,
            self._enqueue,
            Received(
                upload_id=staged.key.rsplit("/", 1)[-1],
                profile_id=profile.id,
                tenant=profile.tenant,
                name=name,
                declared=declared,
                sniffed=sniffed,
                reader=reader,
                staging_key=staged.key,
            ),
            bulk=bulk,
        )

    def _discard(self, key: str) -> None:
        try:
            self._objects.delete(self._settings.bucket_staging, key)
        except AttachdError:
            # The staging lifecycle rule and the reconciler's orphan sweep remove it later.
            log.warning("could not delete staged object %s", key)
