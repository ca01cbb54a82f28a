"""The API's OpenAPI document, public like the monitoring routes (docs/DECISIONS.md): it
describes routes, never data, and the API reference page at /api/1/docs reads it."""

from __future__ import annotations

import falcon

from api.openapi import document


class OpenApiResource:
    def __init__(self, url_prefix: str) -> None:
        self.document = document(url_prefix)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
