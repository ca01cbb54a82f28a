"""The tus 1.0 routes beside Crafter's upload route: thin translations between tus's headers and
api/tus.py's use case, and the headers every tus answer carries (Tus-Resumable, CORS).

    OPTIONS  …/uploadAttachment/resumable[/{id}]   discovery and CORS preflight, no token
    POST     …/uploadAttachment/resumable          creation: 201 + Location + Upload-Expires
    HEAD     …/uploadAttachment/resumable/{id}     the offset (Cache-Control: no-store)
    PATCH    …/uploadAttachment/resumable/{id}     bytes at Upload-Offset: 204 + the new offset
    DELETE   …/uploadAttachment/resumable/{id}     termination: 204
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import falcon
from falcon.uri import encode_value

from api.bodyguard import guarded_body
from api.form import TOKEN_FIELD
from api.tus import EXTENSIONS, TUS_VERSION, Resumables, parse_checksum
from api.tus_write import CHECKSUMS
from core.errors import BadRequest
from core.settings import Settings
from storage.tus import Resumable

TOKEN_HEADER = "X-Access-Token-Id"  # noqa: S105 (a header's name, not a secret)
OFFSET_TYPE = "application/offset+octet-stream"
_EXPOSED = ", ".join(
    (
        "Location",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Metadata",
        "Upload-Expires",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Tus-Checksum-Algorithm",
    )
)
_ALLOWED_HEADERS = ", ".join(
    (
        "Tus-Resumable",
        "Upload-Length",
        "Upload-Offset",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Defer-Length",
        "Upload-Concat",
        "Content-Type",
        TOKEN_HEADER,
        "X-Requested-With",
    )
)


def _token(req: falcon.Request) -> str | None:
    # tus clients set a header once for every request; Crafter's clients use the query string.
    return req.get_param(TOKEN_FIELD) or req.get_header(TOKEN_HEADER) or None


def _http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def _check_version(req: falcon.Request) -> None:
    if req.get_header("Tus-Resumable") != TUS_VERSION:
        raise falcon.HTTPPreconditionFailed(
            description=f"Tus-Resumable must be {TUS_VERSION}, the only version served here",
            headers={"Tus-Version": TUS_VERSION},
        )


class _Tus:
    def __init__(self, resumables: Resumables, settings: Settings) -> None:
        self.resumables = resumables
        self.settings = settings

    def on_options(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        # Discovery and CORS preflight: no token (browsers send none with a preflight).
        resp.status = falcon.HTTP_204
        resp.set_header("Tus-Version", TUS_VERSION)
        resp.set_header("Tus-Extension", ",".join(EXTENSIONS))
        # The installation's limit; a tenant's own may be lower (413 at creation says so).
        resp.set_header("Tus-Max-Size", str(self.settings.max_upload_size))
        resp.set_header("Tus-Checksum-Algorithm", ",".join(CHECKSUMS))


class CreationResource(_Tus):
    def on_post(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        _check_version(req)
        row = self.resumables.create(
            profile_id,
            _token(req),
            req.get_header("Upload-Length"),
            req.get_header("Upload-Metadata"),
        )
        location = f"{self.settings.url_prefix}{req.path}/{row.id}"
        query_token = req.get_param(TOKEN_FIELD)
        if query_token:
            # A client that put the token in the endpoint's query finds it in the upload's URL.
            location += f"?{TOKEN_FIELD}={encode_value(query_token)}"
        resp.status = falcon.HTTP_201
        resp.set_header("Location", location)
        resp.set_header("Upload-Expires", _http_date(row.expires_at))


class UploadResource(_Tus):
    def _row(self, req: falcon.Request, profile_id: str, upload_id: str) -> Resumable:
        _check_version(req)
        return self.resumables.owned(profile_id, _token(req), upload_id)

    def on_head(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, upload_id: str
    ) -> None:
        row = self.resumables.status(self._row(req, profile_id, upload_id))
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("Upload-Offset", str(row.offset))
        resp.set_header("Upload-Length", str(row.length))
        if row.metadata:
            resp.set_header("Upload-Metadata", row.metadata)
        if row.recorded_at is None:
            resp.set_header("Upload-Expires", _http_date(row.expires_at))

    def on_patch(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, upload_id: str
    ) -> None:
        row = self._row(req, profile_id, upload_id)
        # Checked after the token and before a byte of the body is read.
        if (req.content_type or "").split(";")[0].strip().lower() != OFFSET_TYPE:
            raise falcon.HTTPUnsupportedMediaType(
                description=f"A PATCH body must be sent as {OFFSET_TYPE}"
            )
        raw_offset = req.get_header("Upload-Offset")
        if raw_offset is None or not raw_offset.isdigit():
            raise BadRequest("Upload-Offset is required: a non-negative integer")
        checksum = parse_checksum(req.get_header("Upload-Checksum"))
        offset = self.resumables.write(row, int(raw_offset), checksum, self._body(req))
        resp.status = falcon.HTTP_204
        resp.set_header("Upload-Offset", str(offset))
        if offset < row.length:
            resp.set_header("Upload-Expires", _http_date(row.expires_at))

    def _body(self, req: falcon.Request) -> Callable[[int, int], Any]:
        settings = self.settings

        @contextmanager
        def opener(cap: int, limit: int) -> Iterator[tuple[Callable[[int], bytes], int]]:
            # More than the upload's remaining bytes is refused: by Content-Length before a byte
            # is read, or as the body passes the end.
            with guarded_body(req, settings, cap=cap, limit=limit) as guard:
                length = req.content_length
                yield guard.read, cap if length is None else length

        return opener

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, upload_id: str
    ) -> None:
        self.resumables.terminate(self._row(req, profile_id, upload_id))
        resp.status = falcon.HTTP_204


class TusHeaders:
    """Tus-Resumable on every answer of the tus routes, errors included, and CORS for them from
    the configured origins only (none by default: no CORS header at all)."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.origins = origins

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        if not isinstance(resource, _Tus):
            return
        resp.set_header("Tus-Resumable", TUS_VERSION)
        if not self.origins:
            return
        # The answer depends on the Origin whenever CORS is on: caches must keep them apart.
        resp.append_header("Vary", "Origin")
        origin = req.get_header("Origin")
        if not origin or not (origin in self.origins or "*" in self.origins):
            return
        resp.set_header("Access-Control-Allow-Origin", origin)
        resp.set_header("Access-Control-Expose-Headers", _EXPOSED)
        if req.method == "OPTIONS" and req.get_header("Access-Control-Request-Method"):
            resp.set_header("Access-Control-Allow-Methods", "POST, HEAD, PATCH, DELETE, OPTIONS")
            resp.set_header("Access-Control-Allow-Headers", _ALLOWED_HEADERS)
            resp.set_header("Access-Control-Max-Age", "86400")


def add_routes(app: falcon.App, base: str, resumables: Resumables, settings: Settings) -> None:
    app.add_route(
        f"{base}/{{profile_id}}/uploadAttachment/resumable",
        CreationResource(resumables, settings),
    )
    app.add_route(
        f"{base}/{{profile_id}}/uploadAttachment/resumable/{{upload_id}}",
        UploadResource(resumables, settings),
    )
