"""The signed-link routes' part of the OpenAPI document (api/openapi.py merges it in): a module
of its own so the main document stays readable and under the size every module keeps."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _ref("responses", code) for code in codes}


PARAMS: dict[str, Any] = {
    "expiresIn": {
        "name": "expiresIn",
        "in": "query",
        "required": False,
        "description": "Seconds the link is valid (default 3600, at most "
        "ATTACHD_SIGNED_URL_MAX_SECONDS, default 7 days; more is capped)",
        "schema": {"type": "integer", "minimum": 1},
    },
    "uploadId": {
        "name": "uploadId",
        "in": "path",
        "required": True,
        "description": "The version the link serves (`uploadId` of the status route)",
        "schema": {"type": "string"},
    },
    **{
        name: {"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
        for name in ("expires", "sig")
    },
    "linkSize": {
        "name": "size",
        "in": "query",
        "required": False,
        "description": "The rendition the link was signed for, if any",
        "schema": {"type": "integer", "minimum": 1},
    },
}

SCHEMAS: dict[str, Any] = {
    "SignedLink": {
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "description": "Relative to the API's origin, under the URL prefix if one is set",
            },
            "expiresAt": {"type": "string", "format": "date-time"},
        },
        "required": ["url", "expiresAt"],
        "additionalProperties": False,
    }
}


def paths(file_headers: dict[str, Any], file_body: dict[str, Any]) -> dict[str, Any]:
    """The two routes, with the download route's headers and body description."""
    signed_params = [_ref("parameters", p) for p in ("uploadId", "expires", "sig", "linkSize")]
    denied = "Altered or expired link (ACCESS_DENIED)"
    gone = "The version was deleted or replaced"
    return {
        "/api/1/profile/{profileId}/attachment/{name}/url": {
            "get": {
                "summary": "A signed link to the served version (or a rendition), for browsers",
                "parameters": [
                    _ref("parameters", p) for p in ("profileId", "name", "expiresIn", "size")
                ],
                "responses": {
                    "200": {
                        "description": "The link",
                        "content": {JSON: {"schema": _ref("schemas", "SignedLink")}},
                    },
                    **_errors("400", "403", "404"),
                    "503": {
                        **_ref("responses", "503"),
                        "description": "A dependency is down, or ATTACHD_URL_SECRET is not set",
                    },
                },
            }
        },
        "/api/1/signed/{uploadId}": {
            "get": {
                "summary": "The linked file (no token): as the download, Cache-Control bounded "
                "by the link's expiry",
                "security": [],
                "parameters": signed_params,
                "responses": {
                    "200": {
                        "description": "The file",
                        "headers": file_headers,
                        "content": file_body,
                    },
                    "206": {
                        "description": "One byte range",
                        "headers": file_headers,
                        "content": file_body,
                    },
                    "304": {"description": "Not modified"},
                    "400": _ref("responses", "400"),
                    "403": {**_ref("responses", "403"), "description": denied},
                    "404": {**_ref("responses", "404"), "description": gone},
                    **_errors("416", "503"),
                },
            },
            "head": {
                "summary": "The linked file's headers (no token)",
                "security": [],
                "parameters": signed_params,
                "responses": {
                    "200": {"description": "The file's headers", "headers": file_headers},
                    "304": {"description": "Not modified"},
                    "403": {**_ref("responses", "403"), "description": denied},
                    "404": {**_ref("responses", "404"), "description": gone},
                    "503": _ref("responses", "503"),
                },
            },
        },
    }
