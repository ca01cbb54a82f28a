"""A real webhook receiver for the tests: a threaded http.server on 127.0.0.1 that records every
request and answers what the test tells it to, and that can go down and come back on its port."""

from __future__ import annotations

import itertools
import json
import select
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from core.webhooks import DeliveryState
from storage.webhooks import Delivery, Webhooks
from tests.conftest import REPO, _free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.requests: list[Received] = []
        # Status codes to answer, in order; then `status` for every later request.
        self.script: list[int] = []
        self.status = 200
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.script.pop(0) if receiver.script else receiver.status
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received() if r.event["type"] == event_type]

    def ids(self) -> Counter[str]:
        return Counter(r.id for r in self.received())

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.received()):
                return
            time.sleep(0.05)
        got = [(r.event["type"], r.id) for r in self.received()]
        raise AssertionError(f"receiver on {self.port}: condition not met after {timeout}s: {got}")


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The body, once the `standardwebhooks` package accepts its signature (it raises if not)."""
    return dict(Webhook(secret).verify(request.body, request.headers))


def cli(env: dict[str, str], *args: str) -> str:
    """`attachd …` as an operator runs it; its stdout."""
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "attachd"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"attachd {' '.join(args)}: {done.stderr}"
    return done.stdout


def subscribe(env: dict[str, str], url: str, *extra: str) -> tuple[str, str]:
    """(id, secret) of a new subscription, made with `attachd webhook add --json`."""
    out = json.loads(cli(env, "webhook", "add", "--url", url, "--json", *extra))
    return out["id"], out["secret"]


def wait_settled(store: Webhooks, sub_id: str, count: int, timeout: float = 30) -> list[Delivery]:
    """The subscription's deliveries once there are `count` and every one is delivered. From then
    on nothing more goes to its receiver (a delivered delivery is never attempted again), so what
    the receiver holds is final: a duplicate would already be there, no sleep needed to see it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [d for d in store.deliveries(limit=10_000) if d.subscription_id == sub_id]
        if len(rows) == count and all(d.state == DeliveryState.DELIVERED for d in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"not {count} deliveries delivered after {timeout}s: {rows}")
        time.sleep(0.05)


class Trickler:
    """A receiver that reads the request, then sends its status line one byte every `pause`
    seconds and never finishes: every read is quick, the answer never complete. Counts the
    connections it holds at once."""

    def __init__(self, pause: float = 0.5) -> None:
        self.pause = pause
        self.port = _free_port()
        self.accepted = 0
        self.holding = 0
        self.most_held = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Trickler:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            self.holding += 1
            self.most_held = max(self.most_held, self.holding)
        try:
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                    # The rest of the request (its body) may still come; nothing more means the
                    # sender closed: noticed at once, so `holding` is exact.
                    if select.select([conn], [], [], self.pause)[0] and not conn.recv(65536):
                        return
                    if self._stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
        except OSError:
            return  # the sender gave up: what the test waits for
        finally:
            with self._lock:
                self.holding -= 1
