"""The one place where errors become HTTP: Crafter's {"errorCode", "message"} body, always.

Crafter clients map errorCode to an enum, so no new names are invented: situations Crafter does
not have use OTHER with a clear message.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from core import errors

log = logging.getLogger(__name__)


class ParamDeserializationError(errors.BadRequest):
    """A request parameter holds a value that cannot be read (Crafter: `attributes` not JSON)."""


# Most specific first: the first matching class decides.
_MAP: list[tuple[type[Exception], str, str]] = [
    (errors.AccessDenied, falcon.HTTP_403, "ACCESS_DENIED"),
    (errors.ActionDenied, falcon.HTTP_403, "ACTION_DENIED"),
    (errors.NoSuchProfile, falcon.HTTP_404, "NO_SUCH_PROFILE"),
    (errors.NoSuchTenant, falcon.HTTP_404, "NO_SUCH_TENANT"),
    (errors.UploadExpired, falcon.HTTP_410, "OTHER"),
    (errors.UploadGone, falcon.HTTP_404, "OTHER"),
    (errors.NotFound, falcon.HTTP_404, "OTHER"),
    (errors.InvalidEmail, falcon.HTTP_400, "INVALID_EMAIL_ADDRESS"),
    (ParamDeserializationError, falcon.HTTP_400, "PARAM_DESERIALIZATION_ERROR"),
    (errors.RequestTimeout, falcon.HTTP_408, "OTHER"),
    # tus's own status for a chunk that fails its Upload-Checksum.
    (errors.ChecksumMismatch, "460 Checksum Mismatch", "OTHER"),
    (errors.BadRequest, falcon.HTTP_400, "OTHER"),
    (errors.ProfileExists, falcon.HTTP_409, "PROFILE_EXISTS"),
    (errors.TenantExists, falcon.HTTP_409, "TENANT_EXISTS"),
    (errors.Conflict, falcon.HTTP_409, "OTHER"),
    (errors.UploadLocked, falcon.HTTP_423, "OTHER"),
    (errors.UploadTooLarge, falcon.HTTP_413, "OTHER"),
    (errors.UnsupportedType, falcon.HTTP_415, "OTHER"),
    (errors.ServiceUnavailable, falcon.HTTP_503, "OTHER"),
    (errors.NotConfigured, falcon.HTTP_503, "OTHER"),
]

RETRY_AFTER_SECONDS = 5

# Headers a resource may have set for the body it meant to send; they must not describe an error.
_ENTITY_HEADERS = (
    "Content-Length",
    "Content-Range",
    "Content-Disposition",
    "ETag",
    "Last-Modified",
)


def _reply(
    req: falcon.Request, resp: falcon.Response, status: str | int, code: str, message: str
) -> None:
    for name in _ENTITY_HEADERS:
        resp.delete_header(name)
    resp.stream = None
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"errorCode": code, "message": message}
    # A refusal can come before the body is read (a 415 on the file name): the rest of the body
    # must not be parsed as the next request on a kept-alive connection.
    if req.method in ("POST", "PUT", "PATCH") and req.content_length != 0:
        resp.set_header("Connection", "close")


def handle_domain_error(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    for cls, status, code in _MAP:
        if isinstance(ex, cls):
            message = str(ex)
            if isinstance(ex, errors.ObjectMissing):
                # Its text names the bucket and the key: for the log, not for the client.
                log.warning("%s %s: object missing: %s", req.method, req.path, ex)
                message = "The file is not available"
            _reply(req, resp, status, code, message)
            if isinstance(ex, errors.UnsupportedType):
                # Typed, for what counts refusals (api/resources/ops.py): never read from the text.
                req.context.refusal = ex.reason
            if isinstance(ex, errors.ServiceUnavailable):
                resp.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
                log.warning("%s %s: %s", req.method, req.path, ex)
            return
    handle_unexpected(req, resp, ex, params)


def handle_http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any
) -> None:
    """Falcon's own errors (no route, bad multipart, wrong method) in Crafter's shape."""
    if ex.description:
        message = ex.description
    elif ex.status_code == 404:
        message = f"No route for {req.method} {req.path}"
    elif ex.status_code == 405:
        message = f"{req.method} is not allowed on {req.path}"
    else:
        message = ex.title or "Error"
    _reply(req, resp, ex.status, "OTHER", message)
    if ex.headers:
        resp.set_headers(ex.headers)


def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    # Logged with its traceback; the client gets no stack trace.
    log.exception("unhandled error on %s %s", req.method, req.path)
    _reply(req, resp, falcon.HTTP_500, "OTHER", "Internal error")


def install(app: falcon.App) -> None:
    # Falcon picks the most specific handler registered for an exception's class.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(errors.AttachdError, handle_domain_error)
