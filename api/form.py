"""The upload request's multipart form, as Crafter's clients send it: its field names, the
parser's limits, the largest body that can hold an acceptable upload, and its parts read lazily
from the guarded body."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import falcon
import falcon.media

from api.bodyguard import guarded_body
from core.errors import BadRequest
from core.settings import Settings

TOKEN_FIELD = "accessTokenId"  # noqa: S105 - the parameter's name, not a secret
FILE_FIELD = "attachment"
NAME_FIELD = "filename"

# Largest text field (token, file name); the file part itself is streamed, never buffered.
MAX_FIELD_SIZE = 64 * 1024


class Part(Protocol):
    """What we need of a multipart body part (Falcon's BodyPart fits)."""

    @property
    def name(self) -> str | None: ...

    @property
    def filename(self) -> str | None: ...

    @property
    def stream(self) -> Any: ...

    def get_text(self) -> str | None: ...


def form_handler(settings: Settings) -> falcon.media.MultipartFormHandler:
    parse = falcon.media.multipart.MultipartParseOptions()
    parse.max_body_part_count = settings.max_parts
    parse.max_body_part_headers_size = settings.max_part_header_size
    parse.max_body_part_buffer_size = MAX_FIELD_SIZE
    return falcon.media.MultipartFormHandler(parse_options=parse)


def body_cap(settings: Settings) -> int:
    """The largest whole body that can hold an acceptable upload: the file, plus every other part
    at its largest. Beyond it the client is sending something else, whatever the parts are."""
    per_part = settings.max_part_header_size + MAX_FIELD_SIZE + 1024  # + boundary lines
    return settings.max_upload_size + settings.max_parts * per_part


@contextmanager
def open_form(
    req: falcon.Request, settings: Settings, handler: falcon.media.MultipartFormHandler
) -> Iterator[Iterable[Part]]:
    """The parts of an upload request, read lazily from the guarded body."""
    if not (req.content_type or "").lower().startswith("multipart/form-data"):
        raise BadRequest("The request must be multipart/form-data with an 'attachment' part")
    cap = body_cap(settings)
    length = req.content_length
    with guarded_body(req, settings, cap=cap, limit=settings.max_upload_size) as guard:
        yield handler.deserialize(guard, req.content_type, length if length is not None else cap)
