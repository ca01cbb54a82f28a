"""The resumable (tus 1.0) routes' part of the OpenAPI document (api/openapi.py merges it in).

tus is a protocol of headers more than of bodies: what each answer carries is in its headers, and
a tus client (tus-js-client, Uppy, tuspy) is what is meant to call these, not a form."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
CREATION = "/api/1/profile/{profileId}/uploadAttachment/resumable"
UPLOAD = CREATION + "/{uploadId}"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _errors(*codes: str) -> dict[str, Any]:
    """The shared error answers by status; tus's own (409, 410, 412, 423, 460) as named here."""
    return {code: _ref("responses", f"Tus{code}" if code in _OWN else code) for code in codes}


def _header(name: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_VERSION = _header(
    "Tus-Resumable", "The protocol's version: 1.0.0 (else 412)", True, type="string", const="1.0.0"
)
_TOKEN = _header(
    "X-Access-Token-Id", "The access token, for clients that set a header once for every request"
)
_UPLOAD_ID = {
    "name": "uploadId",
    "in": "path",
    "required": True,
    "description": "The resumable upload: the last segment of the creation's Location (also the "
    "id of the pipeline's upload it becomes)",
    "schema": {"type": "string"},
}
_INT = {"schema": {"type": "string", "pattern": "^[0-9]+$"}}
_STR = {"schema": {"type": "string"}}
_TUS = {"Tus-Resumable": {"schema": {"type": "string", "const": "1.0.0"}}}
_DISCOVERY = {
    **_TUS,
    "Tus-Version": _STR,
    "Tus-Extension": {
        "description": "creation, termination, checksum, expiration",
        **_STR,
    },
    "Tus-Max-Size": {"description": "The installation's size limit in bytes", **_INT},
    "Tus-Checksum-Algorithm": _STR,
}

_OWN: dict[str, str] = {
    "409": "Upload-Offset is not the upload's offset (ask with HEAD), or the upload is complete",
    "410": "The upload expired before it was complete (it is reaped soon after)",
    "412": "Tus-Resumable missing or not 1.0.0 (the answer's Tus-Version says what is served)",
    "423": "Another request is writing this upload now, on this or another API process",
    "460": "The chunk does not match its Upload-Checksum; it was discarded",
}
# Error answers (Crafter's body) of the tus routes only, named by status: api/openapi.py adds them.
ERRORS: dict[str, str] = {f"Tus{code}": text for code, text in _OWN.items()}


def _options(*params: Any) -> dict[str, Any]:
    return {
        "summary": "tus discovery and CORS preflight (no token)",
        "parameters": [_ref("parameters", "profileId"), *params],
        "security": [],
        "responses": {"204": {"description": "What is served", "headers": _DISCOVERY}},
    }


def _op(summary: str, params: list[Any], responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_ref("parameters", "profileId"), _VERSION, _TOKEN, *params],
        "responses": responses,
        **extra,
    }


def paths() -> dict[str, Any]:
    return {
        CREATION: {
            "options": _options(),
            "post": _op(
                "Create a resumable upload (tus creation): its URL is the Location",
                [
                    _header(
                        "Upload-Length",
                        "The file's size in bytes, at most the tenant's limit (else 413)",
                        True,
                        type="string",
                        pattern="^[0-9]+$",
                    ),
                    _header(
                        "Upload-Metadata",
                        "`filename` (or Uppy's `name`) base64: the name decides the type "
                        "(else 415)",
                        True,
                    ),
                ],
                {
                    "201": {
                        "description": "Created",
                        "headers": {**_TUS, "Location": _STR, "Upload-Expires": _STR},
                    },
                    **_errors("400", "403", "404", "412", "413", "415", "503"),
                },
            ),
        },
        UPLOAD: {
            "options": _options(_UPLOAD_ID),
            "head": _op(
                "The upload's offset (Cache-Control: no-store)",
                [_UPLOAD_ID],
                {
                    "200": {
                        "description": "Where to resume",
                        "headers": {**_TUS, "Upload-Offset": _INT, "Upload-Length": _INT},
                    },
                    **_errors("400", "403", "404", "410", "412", "503"),
                },
            ),
            "patch": _op(
                "Bytes of the upload from Upload-Offset on; the last one sends it to the pipeline",
                [
                    _UPLOAD_ID,
                    _header(
                        "Upload-Offset",
                        "The upload's offset (else 409)",
                        True,
                        type="string",
                        pattern="^[0-9]+$",
                    ),
                    _header("Upload-Checksum", "`sha1|sha256|md5 base64(digest)` of this body"),
                ],
                {
                    "204": {
                        "description": "Stored: the new offset",
                        "headers": {**_TUS, "Upload-Offset": _INT},
                    },
                    **_errors(
                        "400",
                        "403",
                        "404",
                        "409",
                        "410",
                        "412",
                        "413",
                        "415",
                        "423",
                        "460",
                        "503",
                    ),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "application/offset+octet-stream": {
                            "schema": {
                                "type": "string",
                                "contentMediaType": "application/octet-stream",
                            }
                        }
                    },
                },
            ),
            "delete": _op(
                "Terminate the upload: it is gone with every byte of it (tus termination)",
                [_UPLOAD_ID],
                {
                    "204": {"description": "Terminated", "headers": _TUS},
                    **_errors("400", "403", "404", "412", "423", "503"),
                },
            ),
        },
    }
