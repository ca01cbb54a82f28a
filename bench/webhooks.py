"""The soak's webhook receiver: a threaded http.server on 127.0.0.1 that answers 500 to every
n-th request (so retries happen), verifies each signature with the `standardwebhooks` package,
and counts what it accepted per webhook-id, to check at the end: every event once after
de-duplication, none missing."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


class SoakReceiver:
    def __init__(self, fail_every: int = 7) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.fail_every = fail_every
        self.secret = ""
        self.requests = 0
        self.refused = 0  # answered 500 on purpose
        self.bad_signatures = 0
        self.accepted: Counter[str] = Counter()  # webhook-id → 2xx answers given
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/soak"

    def start(self) -> SoakReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._receive(body, headers)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.requests += 1
                self.bad_signatures += 1
            return 400
        with self._lock:
            self.requests += 1
            if self.requests % self.fail_every == 0:
                self.refused += 1
                return 500
            self.accepted[headers["webhook-id"]] += 1
        return 204

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
