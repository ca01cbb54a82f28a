"""The API's OpenAPI document. Like every /api/1/ route outside monitoring, it needs a valid
token (any tenant, any action)."""

from __future__ import annotations

import falcon

from api.auth import Authorizer
from api.openapi import document

from .attachments import token_param


class OpenApiResource:
    def __init__(self, authorizer: Authorizer, url_prefix: str) -> None:
        self.auth = authorizer
        self.document = document(url_prefix)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.token(token_param(req))
        resp.media = self.document
