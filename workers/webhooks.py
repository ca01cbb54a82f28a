"""Webhook delivery: one signed POST per attempt, retried with backoff until a 2xx or the
give-up, on the `webhooks` queue only, so a slow or dead receiver never holds a pipeline worker.

The outbox rows (storage/webhooks.py) are the truth; Celery messages only carry delivery ids.
A retry due within MAX_COUNTDOWN is a Celery countdown; a longer wait, or a message Redis lost,
is picked up by the reconciler's sweep (`Courier.sweep`), which leases what it re-sends.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
import urllib3.connection
from celery import Celery

from core.errors import AttachdError, ServiceUnavailable
from core.settings import Settings
from core.tasks import Dispatch, TaskName
from core.webhooks import forbidden_address, retry_delay, signature_header
from storage import broker
from storage.engine import utcnow
from storage.records import RecordStore
from storage.secretbox import SecretBox
from storage.telemetry import Telemetry
from storage.webhooks import Job, Webhooks

log = logging.getLogger(__name__)

# Longer waits are left to the reconciler's sweep: a Celery countdown is held unacknowledged by
# a worker, and one longer than the broker's visibility timeout would be delivered twice.
MAX_COUNTDOWN = 600.0
# What a sweep's re-send holds a delivery for before the next sweep may send it again.
SWEEP_LEASE = timedelta(seconds=120)
USER_AGENT = "attachd-webhooks/1"
# Seconds (±50 %) a delivery waits while its receiver has ATTACHD_WEBHOOK_RECEIVER_CONCURRENCY
# attempts in flight, per turn of the receiver's queue, and at most (the reconciler's period).
_ERROR_BODY = 512


class Refused(Exception):
    """The receiver's address is one webhooks may not reach (the SSRF guard)."""


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all
    error: str | None  # None: a 2xx

    @property
    def outcome(self) -> str:
        if self.error is None:
            return "delivered"
        if self.status is not None:
            return "http_error"
        return "refused" if self.error.startswith("refused") else "connection_error"


def resolve_checked(host: str, port: int, allowed: Sequence[str]) -> str:
    """The address to connect to: every address `host` resolves to must be allowed, and the
    connection goes to the one checked, so a second lookup cannot swap it (DNS rebinding)."""
    # urllib3 gives an IPv6 literal in brackets, which getaddrinfo cannot resolve: the guard
    # then never saw `[2002:7f00:1::]` at all (the CLI took it as "not deployed yet").
    host = host.removeprefix("[").removesuffix("]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        why = forbidden_address(address, allowed)
        if why:
            raise Refused(f"refused: {host} resolves to {address}, {why}")
    return addresses[0]


def _connection(
    address: str, port: int, host: str, https: bool, timeout: float
) -> urllib3.connection.HTTPConnection:
    if https:
        # Connected to the address checked, verified (SNI and certificate) as the host named.
        return urllib3.connection.HTTPSConnection(
            address, port, timeout=timeout, server_hostname=host, assert_hostname=host
        )
    return urllib3.connection.HTTPConnection(address, port, timeout=timeout)


def _cut(conn: urllib3.connection.HTTPConnection, fired: threading.Event) -> None:
    """The attempt's deadline: shut the socket, which wakes the read blocked on it. The plain
    socket's shutdown, also under TLS: SSLSocket's own would pull its state from under the read."""
    fired.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, allowed: Sequence[str]
) -> Answer:
    """One attempt, never following a redirect (it could lead anywhere the guard refuses), over
    within `timeout` seconds in all: a socket timeout bounds each read only, and a receiver that
    trickles its answer a byte at a time would otherwise hold the attempt for ever."""
    parts = urllib3.util.parse_url(url)
    https = parts.scheme == "https"
    host = parts.host or ""
    port = parts.port or (443 if https else 80)
    deadline = time.monotonic() + timeout
    fired = threading.Event()
    try:
        address = resolve_checked(host, port, allowed)
        conn = _connection(address, port, host, https, max(deadline - time.monotonic(), 0.01))
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0), _cut, (conn, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            # A cut during connect finds no socket yet: the connect timeout bounds that part,
            # and the attempt stops right after it.
            conn.connect()
            if fired.is_set():
                raise TimeoutError("connected only at the deadline")
            conn.request(
                "POST",
                parts.request_uri,
                body=body,
                headers={**headers, "Host": parts.netloc or host},
            )
            resp = conn.getresponse()
            head = resp.read(_ERROR_BODY)
        finally:
            watchdog.cancel()
            conn.close()
    except Refused as exc:
        return Answer(None, str(exc))
    except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
        if fired.is_set():
            return Answer(None, f"TimeoutError: no complete answer within {timeout:g} s")
        return Answer(None, f"{type(exc).__name__}: {exc}")
    if fired.is_set():
        return Answer(None, f"TimeoutError: no complete answer within {timeout:g} s")
    if 200 <= resp.status < 300:
        return Answer(resp.status, None)
    text = head.decode("utf-8", "replace").strip()
    return Answer(resp.status, f"HTTP {resp.status}" + (f": {text}" if text else ""))


@dataclass(frozen=True)
class Policy:
    timeout: float
    retry_base: float
    retry_max: float
    give_up: float
    allowed_networks: tuple[str, ...]
    per_receiver: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            timeout=settings.webhook_timeout,
            retry_base=settings.webhook_retry_base_seconds,
            retry_max=settings.webhook_retry_max_seconds,
            give_up=settings.webhook_give_up_seconds,
            allowed_networks=settings.webhook_allowed_networks,
            per_receiver=settings.webhook_receiver_concurrency,
        )


Send = Callable[[str, float], None]  # (delivery id, countdown seconds)


class Courier:
    def __init__(
        self,
        store: Webhooks,
        policy: Policy,
        send: Send,
        count: Callable[[str], None] = lambda _outcome: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy
        self.send = send
        self.count = count
        self.clock = clock

    def deliver(self, delivery_id: str) -> str:
        """One attempt at a pending, due delivery. Returns what happened, for the log."""
        job = self.store.job(delivery_id)
        if job is None or job.delivery.state != "pending":
            return "gone" if job is None else str(job.delivery.state)
        now = self.clock()
        # A little early is a countdown's rounding; much earlier, another message for it.
        if job.delivery.next_attempt_at > now + timedelta(seconds=2):
            return "not due"
        attempts = job.delivery.attempts
        hold = timedelta(seconds=self.policy.timeout * 2 + 30)
        receiver = (job.subscription.id, self.policy.per_receiver)
        if not self.store.claim(delivery_id, attempts, hold, receiver):
            # Its receiver holds its share of the pool, or others are ahead of it in that
            # receiver's line: it waits its turn, unsent and without using an attempt. Each
            # attempt that ends sends the head of the line at once (_pass_on); a message lost
            # meanwhile is the reconciler's sweep's. Sending every waiting delivery again later
            # cost thousands of refused claims a minute under one busy receiver, in the very
            # pool that had to deliver (the soak: 124 of 9,588 delivered in eight minutes).
            return "waiting in line"
        try:
            answer = post(
                job.subscription.url,
                job.body,
                self.headers(job, now),
                self.policy.timeout,
                self.policy.allowed_networks,
            )
        except Exception as exc:
            # Whatever ended the attempt (Celery's time limit included) ends it as a failure on
            # the record, so it counts towards the give-up instead of being sent again for ever.
            answer = Answer(None, f"{type(exc).__name__}: {exc}")
        self.count(answer.outcome)
        try:
            if answer.error is None:
                self.store.record_delivered(delivery_id, attempts, answer.status or 200)
                return "delivered"
            return self._retry_later(job, attempts, answer)
        finally:
            self._pass_on(job.subscription.id)

    def _pass_on(self, subscription_id: str) -> None:
        """The places free at the receiver go to its head of line, now: as many deliveries as
        it has room for (two attempts that end at once must not both send the same head)."""
        for head in self.store.heads_of_line(subscription_id, self.policy.per_receiver):
            self._send(head, 0.0)

    def headers(self, job: Job, now: datetime) -> dict[str, str]:
        stamp = int(now.timestamp())
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": job.delivery.event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature_header(
                job.subscription.secrets_at(now), job.delivery.event_id, stamp, job.body
            ),
        }

    def _retry_later(self, job: Job, attempts: int, answer: Answer) -> str:
        now = self.clock()
        p = self.policy
        delay = retry_delay(attempts + 1, p.retry_base, p.retry_max)
        next_at = now + timedelta(seconds=delay)
        error = answer.error or ""
        if next_at > job.delivery.started_at + timedelta(seconds=p.give_up):
            self.store.record_failure(job.delivery.id, attempts, answer.status, error, None, None)
            log.error(
                "webhook %s to %s failed for good: %s", job.delivery.id, job.subscription.url, error
            )
            return "failed"
        by_countdown = delay <= MAX_COUNTDOWN
        lease = next_at + timedelta(seconds=p.timeout * 2 + 60) if by_countdown else None
        if not self.store.record_failure(
            job.delivery.id, attempts, answer.status, error, next_at, lease
        ):
            return "answered by another task"
        log.warning(
            "webhook %s to %s: %s; retry %d in %.0f s",
            job.delivery.id,
            job.subscription.url,
            error,
            attempts + 1,
            delay,
        )
        if by_countdown:
            self._send(job.delivery.id, delay)
        return "retrying"

    def _send(self, delivery_id: str, countdown: float) -> None:
        try:
            self.send(delivery_id, countdown)
        except ServiceUnavailable as exc:
            # Its lease runs out and the reconciler's sweep sends it.
            log.warning("webhook %s not sent now (%s); the reconciler will", delivery_id, exc)

    def announce(self, delivery_ids: Sequence[str]) -> None:
        """After the commit that wrote them: send each at once. Never raises: the move that
        wrote them has happened, and the reconciler sends what this could not."""
        for delivery_id in delivery_ids:
            self._send(delivery_id, 0.0)

    def sweep(self) -> int:
        """The reconciler's part: send every due delivery no task holds. Returns how many."""
        ids = self.store.lease_due(self.clock(), SWEEP_LEASE)
        for delivery_id in ids:
            self._send(delivery_id, 0.0)
        return len(ids)


def sender(app: Celery) -> Send:
    def send(delivery_id: str, countdown: float) -> None:
        broker.publish(app, Dispatch(TaskName.DELIVER_WEBHOOK, delivery_id, countdown=countdown))

    return send


def build_courier(settings: Settings, app: Celery, records: RecordStore) -> Courier:
    telemetry = Telemetry.from_url(settings.redis_url)

    def count(outcome: str) -> None:
        try:
            telemetry.incr("webhook_attempts", outcome)
        except (AttachdError, OSError) as exc:
            log.warning("metrics: webhook attempt not counted: %s", exc)

    store = Webhooks(records.engine, SecretBox(settings.webhook_secret_key))
    return Courier(store, Policy.from_settings(settings), sender(app), count)


def register(app: Celery, courier: Callable[[], Courier], settings: Settings) -> None:
    """The delivery task. Late-acked: a worker that dies mid-attempt hands the message back,
    and the claim's expiry lets the retry through."""
    limit = int(settings.webhook_timeout * 2) + 30

    @app.task(
        name=TaskName.DELIVER_WEBHOOK,
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=limit,
        soft_time_limit=limit - 10,
    )
    def deliver_webhook(delivery_id: str) -> Any:
        started = time.monotonic()
        outcome = courier().deliver(delivery_id)
        log.info("webhook %s: %s in %.2fs", delivery_id, outcome, time.monotonic() - started)
        return outcome
