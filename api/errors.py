"""The one place where errors become HTTP: Crafter's {"errorCode", "message"} body, always.

Crafter clients map errorCode to an enum, so no new names are invented: situations Crafter does
not have use OTHER with a clear message.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from attachd import errors

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides.
_MAP: list[tuple[type[Exception], str, str]] = [
    (errors.AccessDenied, falcon.HTTP_403, "ACCESS_DENIED"),
    (errors.ActionDenied, falcon.HTTP_403, "ACTION_DENIED"),
    (errors.NoSuchProfile, falcon.HTTP_404, "NO_SUCH_PROFILE"),
    (errors.NoSuchTenant, falcon.HTTP_404, "NO_SUCH_TENANT"),
    (errors.NotFound, falcon.HTTP_404, "OTHER"),
    (errors.InvalidEmail, falcon.HTTP_400, "INVALID_EMAIL_ADDRESS"),
    (errors.RequestTimeout, falcon.HTTP_408, "OTHER"),
    (errors.BadRequest, falcon.HTTP_400, "OTHER"),
    (errors.ProfileExists, falcon.HTTP_409, "PROFILE_EXISTS"),
    (errors.TenantExists, falcon.HTTP_409, "TENANT_EXISTS"),
    (errors.Conflict, falcon.HTTP_409, "OTHER"),
    (errors.UploadTooLarge, falcon.HTTP_413, "OTHER"),
    (errors.UnsupportedType, falcon.HTTP_415, "OTHER"),
    (errors.ServiceUnavailable, falcon.HTTP_503, "OTHER"),
]

RETRY_AFTER_SECONDS = 5


def _body(code: str, message: str) -> dict[str, str]:
    return {"errorCode": code, "message": message}


def handle_domain_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    for cls, status, code in _MAP:
        if isinstance(ex, cls):
            resp.status = status
            resp.media = _body(code, str(ex))
            if isinstance(ex, errors.ServiceUnavailable):
                resp.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
                log.warning("%s %s: %s", req.method, req.path, ex)
            _close_if_body_unread(req, resp)
            return
    handle_unexpected(req, resp, ex, params)


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any) -> None:
    """Falcon's own errors (no route, bad multipart, wrong method) in Crafter's shape."""
    resp.status = ex.status
    message = ex.description or ex.title or "Error"
    resp.media = _body("OTHER", message)
    for name, value in (ex.headers or {}).items():
        resp.set_header(name, value)
    _close_if_body_unread(req, resp)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    # Logged with its traceback; the client gets no stack trace.
    log.exception("unhandled error on %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.media = _body("OTHER", "Internal error")


def _close_if_body_unread(req: falcon.Request, resp: falcon.Response) -> None:
    # A refusal can come before the body is read (a 415 on the file name): the rest of the body
    # must not be parsed as the next request on a kept-alive connection.
    if req.method in ("POST", "PUT") and req.content_length != 0:
        resp.set_header("Connection", "close")


def install(app: falcon.App) -> None:
    # Falcon picks the most specific handler registered for an exception's class.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(errors.AttachdError, handle_domain_error)
