"""Attachment routes. Thin: translate HTTP to the receiver, the authorizer and the stores."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import falcon
import falcon.media
from falcon.uri import encode_value

from api import renditions
from api.auth import Authorizer
from api.crafter import OBJECT_ID, attachment_json
from api.form import TOKEN_FIELD, open_form
from api.intake import UploadReceiver
from api.names import check_object_id
from api.ports import Objects, Records
from core.errors import AttachdError, NoSuchAttachment, NotFound
from core.settings import Settings
from storage.records import Attachment, Profile, Upload

log = logging.getLogger(__name__)

# Types that can carry script when rendered inline are only ever offered as downloads.
_DOWNLOAD_ONLY = {"image/svg+xml"}
# Served files are data, never a page: no script, no plugin, no fetch, even if opened directly.
_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


# Real Crafter's answer for an attachment it does not have (ProfileServiceImpl returns an empty
# ProfileAttachment): Crafter sites test `if (avatarInfo.id)`, and its Java client throws on 404.
EMPTY_ATTACHMENT: dict[str, Any] = {
    "md5": None,
    "contentType": None,
    "fileSize": None,
    "fileName": None,
    "fileSizeBytes": 0,
    "id": None,
}


def crafter_client(req: falcon.Request) -> bool:
    """Whether the request came by the `.json` suffix only Crafter's Java client uses
    (api/app.py's PathNormalizer notes it)."""
    return bool(req.context.get("crafter_json"))


# `X-Attachd-Lane: bulk` sends an upload as bulk work (an import, a migration): it waits behind
# every tenant's interactive uploads. A client can only ever put itself behind others.
LANE_HEADER = "X-Attachd-Lane"


def is_bulk(req: falcon.Request) -> bool:
    return (req.get_header(LANE_HEADER) or "").strip().lower() == "bulk"


def token_param(req: falcon.Request) -> str | None:
    value = req.get_param(TOKEN_FIELD)
    return value or None


class _Base:
    def __init__(self, records: Records, objects: Objects, authorizer: Authorizer) -> None:
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
            raise NoSuchAttachment(f"No attachment '{name}' found for profile \"{profile.id}\"")
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
            raise NoSuchAttachment(f"Attachment '{name}' has no verified version yet")
        return attachment, upload


class UploadResource:
    def __init__(
        self,
        receiver: UploadReceiver,
        settings: Settings,
        form_handler: falcon.media.MultipartFormHandler,
    ) -> None:
        self.receiver = receiver
        self.settings = settings
        self.form_handler = form_handler

    def on_post(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        # The query string is read without touching the body, which is parsed lazily.
        query_token = token_param(req)
        with open_form(req, self.settings, self.form_handler) as parts:
            attachment, upload = self.receiver.receive(
                profile_id, query_token, parts, bulk=is_bulk(req)
            )
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
    def on_get(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str
    ) -> None:
        try:
            attachment, upload = self.served(req, profile_id, name)
        except NoSuchAttachment:
            if not crafter_client(req):
                raise
            resp.media = EMPTY_ATTACHMENT
            return
        resp.media = attachment_json(attachment, upload)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _steps(joined: str) -> list[str]:
    return [step for step in joined.split(",") if step]


def status_json(
    attachment: Attachment, upload: Upload, sizes: tuple[int, ...] = ()
) -> dict[str, Any]:
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
        # The type of the bytes served (a HEIC is served as image/jpeg by default).
        "servedType": upload.served_as,
        # What was received (the upload's answer reported it), and what is served once the
        # sanitize step has run; `sanitizedBy`: the steps that changed it (empty: none; null:
        # not sanitized: an SVG, the step off, or not there yet).
        "md5": upload.md5,
        "fileSizeBytes": upload.size,
        "servedMd5": upload.served.md5,
        "servedFileSizeBytes": upload.served.size,
        "sanitizedBy": None if upload.sanitize_steps is None else _steps(upload.sanitize_steps),
        # The sizes `?size=` serves for this version (each made at its first request).
        "renditions": list(sizes),
        "served": attachment.current_upload_id == upload.id,
        "servedUploadId": attachment.current_upload_id,
        "createdAt": _iso(upload.created_at),
        "updatedAt": _iso(upload.updated_at),
        "scannedAt": _iso(upload.scanned_at),
        "verifiedAt": _iso(upload.verified_at),
        "finishedAt": _iso(upload.finished_at),
        # An operator's release from quarantine (`attachd quarantine release`): that it was
        # released, when and why. Who did it is the operators' (`attachd quarantine audit`).
        "releasedAt": _iso(upload.released_at),
        "releaseReason": upload.release_reason,
    }


class StatusResource(_Base):
    def __init__(
        self,
        records: Records,
        objects: Objects,
        authorizer: Authorizer,
        renditions: renditions.Renditions | None = None,
    ) -> None:
        super().__init__(records, objects, authorizer)
        self.renditions = renditions

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str
    ) -> None:
        attachment = self.attachment(req, profile_id, name)
        upload = self.records.latest_upload(attachment.id)
        if upload is None:
            raise NotFound(f"Attachment '{name}' has no upload")
        offered = self.renditions.offered(upload) if self.renditions else ()
        resp.media = status_json(attachment, upload, offered)


class FileResource(_Base):
    def __init__(
        self,
        records: Records,
        objects: Objects,
        authorizer: Authorizer,
        renditions: renditions.Renditions,
    ) -> None:
        super().__init__(records, objects, authorizer)
        self.renditions = renditions

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str
    ) -> None:
        try:
            _attachment, upload = self.served(req, profile_id, name)
        except NoSuchAttachment:
            if not crafter_client(req):
                raise
            # Crafter's own answer for a file it does not have: an empty 200.
            resp.content_length = 0
            return
        size = req.get_param(renditions.SIZE_PARAM)
        chosen = self.renditions.select(upload, size, req.get_header("Accept"))
        serve_file(req, resp, self.objects, upload, chosen=chosen)

    on_head = on_get

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str
    ) -> None:
        attachment = self.attachment(req, profile_id, name)
        # Nothing sweeps the attachments bucket for orphans: with MinIO down, refuse (503) rather
        # than forget the record of objects that would then stay forever.
        self.objects.ping()
        buckets = self.objects.buckets
        for upload in self.records.delete_attachment(attachment.id):
            for bucket, key in (
                (buckets.staging, upload.staging_key),
                (buckets.attachments, upload.object_key),
                (buckets.quarantine, upload.quarantine_key),
            ):
                if key:
                    try:
                        if bucket == buckets.attachments:
                            # The file and every rendition made of it.
                            self.objects.delete_version(bucket, key)
                        else:
                            self.objects.delete(bucket, key)
                    except AttachdError:
                        log.warning("could not delete %s/%s of a deleted attachment", bucket, key)
        resp.status = falcon.HTTP_204


# What the download route answers a client may cache: revalidate every time (the token in its
# URL is checked on each request). Signed links send their own, bounded by their expiry.
REVALIDATE = "private, no-cache"


def serve_file(
    req: falcon.Request,
    resp: falcon.Response,
    objects: Objects,
    upload: Upload,
    cache_control: str = REVALIDATE,
    chosen: renditions.Selected | None = None,
) -> None:
    """Answer GET or HEAD with an attached version's bytes: ETag and Last-Modified, conditional
    requests (304), one byte range (206, 416), streamed from MinIO. The download route and
    signed links (api/resources/links.py) both serve through here. `chosen`: the file or one of
    its renditions (api/renditions.Renditions.select); the file by default."""
    chosen = chosen or renditions.file_of(upload)
    etag = falcon.ETag(chosen.sha256)
    _validators(resp, upload, etag, cache_control)
    if chosen.negotiated:
        # The format followed the client's Accept: a cache keeps one copy per Accept.
        resp.vary = ("Accept",)
    if _not_modified(req, etag, upload.finished_at):
        resp.status = falcon.HTTP_304
        return
    size = chosen.size
    byte_range = _byte_range(req, etag, size)
    offset, length = byte_range if byte_range else (0, size)
    bucket = objects.buckets.attachments
    body: Iterator[bytes] | None = None
    if req.method == "HEAD":
        # The same answer as GET would give, without the bytes: 503 if MinIO is down.
        objects.stat(bucket, chosen.key)
    elif length > 0:
        chunks = objects.iter_range(bucket, chosen.key, offset, length)
        # Pull the first chunk before any header is set, so a MinIO failure is a clean 503,
        # not a truncated 200.
        body = _chain(next(chunks, b""), chunks)
    _describe(resp, upload, chosen)
    if byte_range:
        resp.status = falcon.HTTP_206
        resp.content_range = (offset, offset + length - 1, size)
    resp.content_length = length
    resp.stream = body


def _validators(resp: falcon.Response, upload: Upload, etag: falcon.ETag, cache: str) -> None:
    """What a 304 repeats of the full answer."""
    resp.etag = etag
    if upload.finished_at:
        resp.last_modified = upload.finished_at
    resp.set_header("Cache-Control", cache)


def _describe(resp: falcon.Response, upload: Upload, chosen: renditions.Selected) -> None:
    """Headers of the served bytes (200 and 206): the type and name of what is sent, which for
    a rendition (or a converted picture) is not the type received."""
    resp.content_type = chosen.content_type or upload.served_as
    resp.accept_ranges = "bytes"
    resp.set_header("Content-Security-Policy", _CSP)
    kind = "attachment" if upload.declared_type in _DOWNLOAD_ONLY else "inline"
    name = upload.original_name
    if chosen.extension:
        name = f"{name.rsplit('.', 1)[0] if '.' in name else name}.{chosen.extension}"
    resp.set_header("Content-Disposition", content_disposition(kind, name))


def content_disposition(kind: str, name: str) -> str:
    """Falcon's downloadable_as quotes an ASCII name as it is: a `"` in it (`x"; filename="a.html`)
    would end the quoted string and add parameters of the uploader's choosing. A name that cannot
    be quoted as it is goes out as Falcon sends a non-ASCII one: an RFC 5987 filename* with a
    sanitised fallback."""
    if name.isascii() and '"' not in name and "\\" not in name:
        return f'{kind}; filename="{name}"'
    return f"{kind}; filename={falcon.secure_filename(name)}; filename*=UTF-8''{encode_value(name)}"


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _not_modified(req: falcon.Request, etag: falcon.ETag, modified: datetime | None) -> bool:
    if req.if_none_match is not None:
        return any(tag == "*" or tag == etag for tag in req.if_none_match)
    if req.if_modified_since is not None and modified is not None:
        since = req.if_modified_since.replace(tzinfo=modified.tzinfo)
        return modified.replace(microsecond=0) <= since
    return False


def _byte_range(req: falcon.Request, etag: falcon.ETag, size: int) -> tuple[int, int] | None:
    """(offset, length) of the one range asked for, or None for the whole file. A Range header
    that cannot be honoured as asked (malformed, several ranges, another unit, or an If-Range
    that no longer matches) is ignored, as HTTP allows: the client gets the whole file."""
    if_range = req.get_header("If-Range")
    if if_range is not None and if_range.strip() != etag.dumps():
        return None
    try:
        byte_range = req.range
    except falcon.HTTPInvalidHeader:
        return None
    if byte_range is None or req.range_unit != "bytes":
        return None
    start, end = byte_range
    if start < 0:  # suffix range: the last -start bytes
        start, end = max(size + start, 0), size - 1
    elif end < 0 or end >= size:
        end = size - 1
    if start >= size or start > end:
        raise falcon.HTTPRangeNotSatisfiable(size)
    return start, end - start + 1
