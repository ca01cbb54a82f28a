"""Request context for logs: every line logged while a request is handled carries its request id,
which is also answered in X-Request-ID and travels with the tasks the request sends."""

from __future__ import annotations

import re
import uuid
from typing import Any

import falcon

from core import logs

HEADER = "X-Request-ID"
# A caller's id is kept (a proxy's, a client's) when it is short and plain; anything else is
# replaced, so a log line never carries what a client chose to inject.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestContext:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(HEADER) or ""
        request_id = given if _ACCEPTABLE.fullmatch(given) else uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.log_token = logs.bind(request_id=request_id)
        resp.set_header(HEADER, request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        token = req.context.get("log_token")
        if token is not None:
            logs.reset(token)
            req.context.log_token = None
