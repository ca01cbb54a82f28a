"""Signed download links: a token holder asks for a link (`…/attachment/{name}/url[?size=N]`), and
anyone holding the link may GET or HEAD that one version until it expires (`/api/1/signed/…`),
served exactly as the download route serves it (attachments.serve_file)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import falcon

from api import renditions
from api.auth import Authorizer
from api.params import positive_param
from api.ports import Objects, Records
from api.resources.attachments import _Base, serve_file
from api.signing import EXPIRES, SIGNATURE, SIZE, Link, Signer
from core.domain import State
from core.errors import NoSuchAttachment
from core.settings import Settings
from storage.records import Upload

DEFAULT_SECONDS = 3600
SIGNED_PATH = "/api/1/signed"


class LinkResource(_Base):
    """GET …/attachment/{name}/url?expiresIn=S: a link to the served version, valid S seconds
    (default an hour, at most ATTACHD_SIGNED_URL_MAX_SECONDS)."""

    def __init__(
        self,
        records: Records,
        objects: Objects,
        authorizer: Authorizer,
        signer: Signer,
        *,
        max_seconds: int,
        url_prefix: str,
        renditions: renditions.Renditions,
    ) -> None:
        super().__init__(records, objects, authorizer)
        self.signer = signer
        self.max_seconds = max_seconds
        self.url_prefix = url_prefix
        self.renditions = renditions

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, profile_id: str, name: str
    ) -> None:
        seconds = positive_param(req, "expiresIn") or DEFAULT_SECONDS
        size = positive_param(req, SIZE)
        _attachment, upload = self.served(req, profile_id, name)
        # A size the download would refuse (400) gets no link. The format is not signed: the
        # link's holder negotiates it, as the download route's client does.
        self.renditions.check(upload, str(size) if size else None)
        expires = self.signer.now() + min(seconds, self.max_seconds)
        query = self.signer.query(Link(upload.id, expires, size))
        # With a URL prefix the link carries it: it then works behind the proxy that routes the
        # prefix, and directly too (every route answers with and without it).
        resp.media = {
            "url": f"{self.url_prefix}{SIGNED_PATH}/{upload.id}?{urlencode(query)}",
            "expiresAt": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class SignedFileResource:
    """GET/HEAD /api/1/signed/{upload_id}?expires=…&sig=…: no token; 403 for an altered or
    expired link, 404 once that version is deleted or replaced."""

    def __init__(
        self,
        records: Records,
        objects: Objects,
        signer: Signer,
        renditions: renditions.Renditions,
    ) -> None:
        self.records = records
        self.objects = objects
        self.signer = signer
        self.renditions = renditions

    def on_get(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        link = self.signer.verify(
            upload_id, req.get_param(EXPIRES), req.get_param(SIZE), req.get_param(SIGNATURE)
        )
        upload = self._served(upload_id)
        # The rendition the link was signed for, chosen as the download route chooses.
        size = str(link.size) if link.size else None
        chosen = self.renditions.select(upload, size, req.get_header("Accept"))
        # A cache may keep it no longer than the link is valid.
        remaining = max(link.expires - self.signer.now(), 0)
        cache = f"private, max-age={remaining}"
        serve_file(req, resp, self.objects, upload, cache_control=cache, chosen=chosen)

    on_head = on_get

    def _served(self, upload_id: str) -> Upload:
        upload = self.records.get_upload(upload_id)
        if upload is None:
            raise NoSuchAttachment("The linked file has been deleted")
        attachment = self.records.get_attachment(upload.attachment_id)
        if (
            upload.state != State.ATTACHED
            or upload.object_key is None
            or attachment is None
            or attachment.current_upload_id != upload.id
        ):
            raise NoSuchAttachment("The linked version is no longer served")
        return upload


def add_routes(
    app: falcon.App,
    base: str,
    settings: Settings,
    records: Records,
    objects: Objects,
    authorizer: Authorizer,
    made: renditions.Renditions,
) -> None:
    signer = Signer(settings.url_secret)
    app.add_route(
        f"{base}/{{profile_id}}/attachment/{{name}}/url",
        LinkResource(
            records,
            objects,
            authorizer,
            signer,
            max_seconds=settings.signed_url_max_seconds,
            url_prefix=settings.url_prefix,
            renditions=made,
        ),
    )
    app.add_route(
        f"{SIGNED_PATH}/{{upload_id}}",
        SignedFileResource(records, objects, signer, made),
    )
