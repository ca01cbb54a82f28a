"""Attachment routes. Thin: translate HTTP to the receiver, the authorizer and the stores."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import falcon

from api.auth import Authorizer
from api.crafter import OBJECT_ID, attachment_json
from api.uploads import TOKEN_FIELD, UploadReceiver, check_object_id
from attachd.errors import AttachdError, BadRequest, NotFound
from attachd.settings import Settings
from storage.objects import ObjectStore
from storage.records import Attachment, Profile, RecordStore, Upload

# Types that can carry script when rendered inline are only ever offered as downloads.
_DOWNLOAD_ONLY = {"image/svg+xml"}
_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


def token_param(req: falcon.Request) -> str | None:
    value = req.get_param(TOKEN_FIELD)
    return value or None


class _Base:
    def __init__(self, records: RecordStore, objects: ObjectStore, authorizer: Authorizer) -> None:
        self.records = records
        self.objects = objects
        self.auth = authorizer

    def profile(self, req: falcon.Request, profile_id: str) -> Profile:
        check_object_id(profile_id)
        return self.auth.profile(token_param(req), profile_id)

    def attachment(self, req: falcon.Request, profile_id: str, name: str) -> Attachment:
        profile = self.profile(req, profile_id)
        attachment = self.records.find_attachment(profile.id, name)
        if attachment is None:
            raise NotFound(f"No attachment '{name}' found for profile \"{profile.id}\"")
        return attachment

    def served(self, req: falcon.Request, profile_id: str, name: str) -> tuple[Attachment, Upload]:
        """The attached version; an upload still in the pipeline is never served."""
        attachment = self.attachment(req, profile_id, name)
        upload = (
            self.records.get_upload(attachment.current_upload_id)
            if attachment.current_upload_id
            else None
        )
        if upload is None or upload.object_key is None:
            raise NotFound(f"Attachment '{name}' has no verified version yet")
        return attachment, upload


class UploadResource:
    def __init__(self, receiver: UploadReceiver, settings: Settings) -> None:
        self.receiver = receiver
        self.settings = settings

    def on_post(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        if not (req.content_type or "").lower().startswith("multipart/form-data"):
            raise BadRequest("The request must be multipart/form-data with an 'attachment' part")
        expected = req.content_length or self.settings.max_upload_size
        deadline = (
            time.monotonic()
            + self.settings.upload_grace_seconds
            + expected / self.settings.upload_min_rate
        )
        sock = req.env.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(self.settings.upload_idle_timeout)
        # The query string is read without touching the body, which is parsed lazily below.
        query_token = req.get_param(TOKEN_FIELD) or None
        form = req.get_media()
        attachment, upload = self.receiver.receive(profile_id, query_token, form, deadline)
        resp.media = attachment_json(attachment, upload)


class ListResource(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        # Crafter's own route reads ?profileId= (a bug its client trips over): the path id wins
        # when it is a real id, the parameter is the fallback.
        query_id = req.get_param("profileId")
        if not OBJECT_ID.match(profile_id) and query_id:
            profile_id = query_id
        profile = self.profile(req, profile_id)
        resp.media = [attachment_json(a, u) for a, u in self.records.attached_files(profile.id)]


class DetailsResource(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str) -> None:
        attachment, upload = self.served(req, profile_id, name)
        resp.media = attachment_json(attachment, upload)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def status_json(attachment: Attachment, upload: Upload) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "fileName": attachment.file_name,
        "uploadId": upload.id,
        "state": upload.state,
        "reason": upload.reason,
        "signature": upload.signature,
        "declaredType": upload.declared_type,
        "sniffedType": upload.sniffed_type,
        "detectedType": upload.detected_type,
        "md5": upload.md5,
        "fileSizeBytes": upload.size,
        "served": attachment.current_upload_id == upload.id,
        "servedUploadId": attachment.current_upload_id,
        "createdAt": _iso(upload.created_at),
        "updatedAt": _iso(upload.updated_at),
        "scannedAt": _iso(upload.scanned_at),
        "verifiedAt": _iso(upload.verified_at),
        "finishedAt": _iso(upload.finished_at),
    }


class StatusResource(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str) -> None:
        attachment = self.attachment(req, profile_id, name)
        upload = self.records.latest_upload(attachment.id)
        if upload is None:
            raise NotFound(f"Attachment '{name}' has no upload")
        resp.media = status_json(attachment, upload)


class FileResource(_Base):
    def __init__(
        self, records: RecordStore, objects: ObjectStore, authorizer: Authorizer, bucket: str
    ) -> None:
        super().__init__(records, objects, authorizer)
        self.bucket = bucket

    def on_get(self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str) -> None:
        _attachment, upload = self.served(req, profile_id, name)
        assert upload.object_key is not None
        etag = falcon.ETag(upload.sha256)
        resp.etag = etag
        if upload.finished_at:
            resp.last_modified = upload.finished_at
        resp.content_type = upload.declared_type
        resp.accept_ranges = "bytes"
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Content-Security-Policy", _CSP)
        resp.set_header("Cache-Control", "private, no-cache")
        if upload.declared_type in _DOWNLOAD_ONLY:
            resp.downloadable_as = upload.original_name
        else:
            resp.viewable_as = upload.original_name
        if _not_modified(req, etag, upload.finished_at):
            resp.status = falcon.HTTP_304
            return
        size = upload.size
        offset, length = 0, size
        byte_range = req.range if _range_applies(req, etag) else None
        if byte_range is not None and size > 0:
            start, end = byte_range
            if start < 0:  # suffix range: the last -start bytes
                start, end = max(size + start, 0), size - 1
            elif end < 0 or end >= size:
                end = size - 1
            if start >= size or start > end:
                resp.status = falcon.HTTP_416
                resp.content_range = (0, size - 1, size)
                resp.set_header("Content-Range", f"bytes */{size}")
                resp.media = {"errorCode": "OTHER", "message": "Requested range not satisfiable"}
                return
            offset, length = start, end - start + 1
            resp.status = falcon.HTTP_206
            resp.content_range = (start, end, size)
        resp.content_length = length
        if req.method == "HEAD" or length == 0:
            return
        chunks = self.objects.iter_range(self.bucket, upload.object_key, offset, length)
        # Pull the first chunk now so a MinIO failure is a clean 503, not a truncated 200.
        first = next(chunks, b"")
        resp.stream = _chain(first, chunks)

    on_head = on_get

    def on_delete(self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str) -> None:
        attachment = self.attachment(req, profile_id, name)
        removed = self.records.delete_attachment(attachment.id)
        buckets = self.objects.buckets
        for upload in removed:
            for bucket, key in (
                (buckets.staging, upload.staging_key),
                (buckets.attachments, upload.object_key),
                (buckets.quarantine, upload.quarantine_key),
            ):
                if key:
                    try:
                        self.objects.delete(bucket, key)
                    except AttachdError:
                        # The reconciler's orphan sweep finds objects with no record.
                        pass
        resp.status = falcon.HTTP_204


def _chain(first: bytes, rest: Any) -> Any:
    if first:
        yield first
    yield from rest


def _not_modified(req: falcon.Request, etag: falcon.ETag, modified: datetime | None) -> bool:
    if req.if_none_match is not None:
        return any(tag == "*" or tag == etag for tag in req.if_none_match)
    if req.if_modified_since is not None and modified is not None:
        return modified.replace(microsecond=0) <= req.if_modified_since.replace(tzinfo=modified.tzinfo)
    return False


def _range_applies(req: falcon.Request, etag: falcon.ETag) -> bool:
    if_range = req.get_header("If-Range")
    return if_range is None or if_range.strip() == etag.dumps()
