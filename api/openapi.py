"""The OpenAPI 3.1 document of the whole API, served at /api/1/openapi.json.

Built here rather than kept as a JSON file so the shared pieces (the error body, the token, the
common error responses) are written once. tests/integration/test_api_openapi.py calls every
operation it lists and validates each answer against it, and checks it lists every route the app
has, so it cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from api import openapi_links, openapi_tus
from core import package_version
from core.domain import State

JSON = "application/json"
ERROR_CODES = [
    "ACCESS_DENIED",
    "ACTION_DENIED",
    "NO_SUCH_PROFILE",
    "NO_SUCH_TENANT",
    "INVALID_EMAIL_ADDRESS",
    "PARAM_DESERIALIZATION_ERROR",
    "PROFILE_EXISTS",
    "OTHER",
]
STATES = [state.value for state in State]

_DESCRIPTION = """\
Crafter Profile's attachment API, with uploads scanned and verified before they are served.

Every route except `/api/1/monitoring/*` and this document needs `accessTokenId`, as a query
parameter or (upload, create) as a form field. Attachment and profile calls need
`MANAGE_PROFILES` on the profile's tenant. Every path also answers with the `.json` suffix
Crafter's Java client appends (`…/attachments/.json`, `…/details.json`), and under the
configured URL prefix. On the `.json` paths only, an unknown attachment answers as Crafter does:
its details an empty attachment (200, every field null, `fileSizeBytes` 0), its download an
empty 200. `/api/1/signed/…` needs no token: its signature is the credential. The resumable
(tus 1.0) routes also take the token as an `X-Access-Token-Id` header, as tus clients send it.
Errors are always `{"errorCode", "message"}`."""


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **extra}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "errorCode": {"type": "string", "enum": ERROR_CODES},
            "message": {"type": "string"},
        }
    ),
    "Attachment": {
        **_obj(
            {
                "md5": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "contentType": {"type": "string"},
                "fileSize": {
                    "type": "string",
                    "description": "Crafter's readable size: base 1024, pattern `#,##0.#`",
                    "examples": ["22.6 KB"],
                },
                "fileName": {"type": "string", "description": "The name without extension"},
                "fileSizeBytes": {"type": "integer", "minimum": 1},
                "id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            }
        ),
        "description": "Exactly Crafter's fields: its Java client fails on any other.",
    },
    "UploadStatus": _obj(
        {
            "id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "fileName": {"type": "string"},
            "uploadId": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "reason": _nullable("string"),
            "signature": _nullable("string", description="The virus found, if infected"),
            "declaredType": {"type": "string", "description": "From the name's extension"},
            "sniffedType": _nullable("string", description="libmagic on the first 4 KiB"),
            "detectedType": _nullable("string", description="The verifier's finding"),
            "servedType": {
                "type": "string",
                "description": "Of the bytes served: the declared type, or image/jpeg for a "
                "HEIC/HEIF served as JPEG (ATTACHD_HEIF_SERVE)",
            },
            "md5": {"type": "string", "description": "Of the bytes received"},
            "fileSizeBytes": {"type": "integer", "description": "Of the bytes received"},
            "servedMd5": {
                "type": "string",
                "description": "Of the bytes served (sanitized; the received md5 until then)",
            },
            "servedFileSizeBytes": {"type": "integer"},
            "sanitizedBy": {
                "type": ["array", "null"],
                "items": {"type": "string", "enum": ["strip", "orient", "reencode"]},
                "description": "The steps that changed the picture ([]: served byte for byte; "
                "null: not sanitized — an SVG, ATTACHD_IMAGE_SANITIZE=off, or not yet)",
            },
            "renditions": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "Sizes `?size=` serves for this version",
            },
            "served": {
                "type": "boolean",
                "description": "Whether this upload is the version served now",
            },
            "servedUploadId": _nullable("string"),
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "scannedAt": _nullable("string", format="date-time"),
            "verifiedAt": _nullable("string", format="date-time"),
            "finishedAt": _nullable("string", format="date-time"),
            "releasedAt": _nullable(
                "string", format="date-time", description="When it was released from quarantine"
            ),
            "releaseReason": _nullable("string", description="Why it was released"),
        }
    ),
    "Profile": _obj(
        {
            "id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "username": {"type": "string"},
            "email": {"type": "string"},
            "verified": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "createdOn": {"type": "integer", "description": "Epoch milliseconds"},
            "lastModified": {"type": "integer", "description": "Epoch milliseconds"},
            "tenant": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "attributes": {"type": "object"},
        }
    ),
    "MonitoringStatus": _obj(
        {
            "status": {"type": "string", "enum": ["up", "down"]},
            "dependencies": {
                "type": "object",
                "additionalProperties": _obj(
                    {
                        "status": {"type": "string", "enum": ["up", "down"]},
                        "error": {"type": "string"},
                        "latencyMs": {"type": "number"},
                    },
                    required=["status", "latencyMs"],
                ),
            },
        }
    ),
    "Version": _obj(
        {
            name: {"type": "string"}
            for name in (
                "packageName",
                "packageVersion",
            )
        }
    ),
}

_ERRORS = {
    "400": "Malformed id, parameter or multipart body",
    "403": "ACCESS_DENIED (token missing, unknown or expired) or ACTION_DENIED",
    "404": "NO_SUCH_PROFILE, NO_SUCH_TENANT, or no such attachment or route",
    "408": "The body came too slowly",
    "409": "PROFILE_EXISTS",
    "413": "The file is over the size limit",
    "415": "The type is not allowed, or the content contradicts the name",
    "416": "The range is outside the file",
    "503": "A dependency (MinIO, the database) is unreachable; see Retry-After",
}

_PARAMS: dict[str, Any] = {
    "profileId": {
        "name": "profileId",
        "in": "path",
        "required": True,
        "description": "The profile's id (24 lowercase hex characters)",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
    },
    "name": {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The attachment's fileName (without extension) or its 24-hex id",
        "schema": {"type": "string"},
    },
    "size": {
        "name": "size",
        "in": "query",
        "required": False,
        "description": "A rendition instead of the file: its longest side in pixels, one of "
        "ATTACHD_IMAGE_RENDITIONS (default 128, 512); another size, or any for an SVG, is a 400. "
        "Made at its first request and stored; in AVIF or WebP when the Accept header lists "
        "them (ATTACHD_IMAGE_RENDITION_FORMATS), else in the picture's web format; the answer "
        "carries Vary: Accept",
        "schema": {"type": "integer", "minimum": 1},
    },
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _ref("responses", code) for code in codes}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: tuple[str, ...] = ("profileId",),
    public: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [_ref("parameters", p) for p in params],
        "responses": responses,
        **extra,
    }
    if public:
        op["security"] = []
    return op


_FILE_HEADERS = {
    "ETag": {"schema": {"type": "string"}},
    "Content-Security-Policy": {"schema": {"type": "string"}},
    "X-Content-Type-Options": {"schema": {"type": "string", "const": "nosniff"}},
    "Content-Disposition": {
        "description": "`attachment` for types that could carry script (SVG), else `inline`",
        "schema": {"type": "string"},
    },
}
_FILE_BODY = {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}


def _paths() -> dict[str, Any]:
    attachment = _ref("schemas", "Attachment")
    profile = _ref("schemas", "Profile")
    read_errors = ("400", "403", "404", "503")
    file_ops = {
        "get": _op(
            "Download the attached file (streamed; Range and conditional GET)",
            {
                "200": {"description": "The file", "headers": _FILE_HEADERS, "content": _FILE_BODY},
                "206": {
                    "description": "One byte range",
                    "headers": _FILE_HEADERS,
                    "content": _FILE_BODY,
                },
                "304": {"description": "Not modified (If-None-Match, If-Modified-Since)"},
                **_errors(*read_errors, "416"),
            },
            params=("profileId", "name", "size"),
        ),
        "head": _op(
            "The download's headers",
            {
                "200": {"description": "The file's headers", "headers": _FILE_HEADERS},
                "304": {"description": "Not modified"},
                **_errors(*read_errors),
            },
            params=("profileId", "name", "size"),
        ),
        "delete": _op(
            "Delete the attachment, every version of it and every object",
            {"204": {"description": "Deleted"}, **_errors(*read_errors)},
            params=("profileId", "name"),
        ),
    }
    return {
        "/api/1/profile/{profileId}/uploadAttachment": {
            "post": _op(
                "Upload a file; it is served once scanned and verified",
                {
                    "200": _json(attachment, "Accepted: in the pipeline"),
                    **_errors("400", "403", "404", "408", "413", "415", "503"),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "accessTokenId": {"type": "string"},
                                    "filename": {
                                        "type": "string",
                                        "description": "Overrides the part's file name",
                                    },
                                    "attachment": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                        "description": "The file; its name's extension gives "
                                        "its type, one of ATTACHD_ALLOWED_TYPES (by default "
                                        "BMP, GIF, JPEG, PNG, TIFF, SVG, WebP, AVIF, HEIC and "
                                        "HEIF; a HEIC/HEIF is served as JPEG)",
                                    },
                                },
                                "required": ["attachment"],
                            }
                        }
                    },
                },
            )
        },
        "/api/1/profile/{profileId}/attachments": {
            "get": _op(
                "List the attached files",
                {
                    "200": _json({"type": "array", "items": attachment}, "Attached files"),
                    **_errors(*read_errors),
                },
            )
        },
        "/api/1/profile/{profileId}/attachment/{name}": file_ops,
        "/api/1/profile/{profileId}/attachment/{name}/details": {
            "get": _op(
                "Metadata of the attached version",
                {"200": _json(attachment, "The attachment"), **_errors(*read_errors)},
                params=("profileId", "name"),
            )
        },
        "/api/1/profile/{profileId}/attachment/{name}/status": {
            "get": _op(
                "Pipeline state of the latest upload of this name",
                {
                    "200": _json(_ref("schemas", "UploadStatus"), "The latest upload"),
                    **_errors(*read_errors),
                },
                params=("profileId", "name"),
            )
        },
        "/api/1/profile/create": {
            "post": _op(
                "Create a profile",
                {
                    "200": _json(profile, "The new profile"),
                    **_errors("400", "403", "404", "409", "503"),
                },
                params=(),
                requestBody={
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "accessTokenId": {"type": "string"},
                                    "tenantName": {"type": "string"},
                                    "username": {"type": "string"},
                                    "email": {"type": "string"},
                                    "enabled": {"type": "boolean"},
                                    "password": {"type": "string"},
                                    "role": {"type": "array", "items": {"type": "string"}},
                                    "attributes": {
                                        "type": "string",
                                        "description": "A JSON object",
                                    },
                                },
                                "required": ["tenantName", "username", "email", "enabled"],
                            }
                        }
                    },
                },
            )
        },
        "/api/1/profile/{profileId}": {
            "get": _op(
                "Get a profile", {"200": _json(profile, "The profile"), **_errors(*read_errors)}
            )
        },
        "/api/1/monitoring/status": {
            "get": _op(
                "Health of every dependency (no token)",
                {
                    "200": _json(_ref("schemas", "MonitoringStatus"), "All up"),
                    "503": _json(_ref("schemas", "MonitoringStatus"), "Something is down"),
                },
                params=(),
                public=True,
            )
        },
        "/api/1/monitoring/version": {
            "get": _op(
                "Version (no token)",
                {"200": _json(_ref("schemas", "Version"), "Versions")},
                params=(),
                public=True,
            )
        },
        "/api/1/openapi.json": {
            "get": _op(
                "This document (no token)",
                {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                params=(),
                public=True,
            )
        },
    }


def document(url_prefix: str = "") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "attachd",
            "version": package_version(),
            "description": _DESCRIPTION,
        },
        "servers": [{"url": url_prefix or "/"}],
        "security": [{"accessTokenId": []}],
        "paths": {
            **_paths(),
            **openapi_tus.paths(),
            **openapi_links.paths(_FILE_HEADERS, _FILE_BODY),
        },
        "components": {
            "securitySchemes": {
                "accessTokenId": {"type": "apiKey", "in": "query", "name": "accessTokenId"}
            },
            "schemas": {**_SCHEMAS, **openapi_links.SCHEMAS},
            "parameters": {**_PARAMS, **openapi_links.PARAMS},
            "responses": {
                code: _json(_ref("schemas", "Error"), text)
                for code, text in {**_ERRORS, **openapi_tus.ERRORS}.items()
            },
        },
    }
