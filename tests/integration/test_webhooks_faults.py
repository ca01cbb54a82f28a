"""Webhooks when things go wrong, on a private pipeline (its own Redis, clamd and worker): a
receiver answering 500, a receiver that is down for a while, a broker that restarts empty, a
delivery given up on and sent again. The retry schedule is shortened by settings to keep the
tests fast; what it schedules is the same code as with the defaults."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from core.webhooks import DeliveryState
from storage.engine import utcnow
from storage.objects import staging_key
from storage.secretbox import SecretBox
from storage.webhooks import Delivery, Webhooks
from tests.conftest import _free_port, png_bytes
from tests.integration.pipeline_support import PrivateStack
from tests.integration.webhook_support import Receiver, Trickler, cli, verified
from workers.webhooks import Courier, Policy, sender

pytestmark = pytest.mark.integration

PIPELINE_QUEUES = ("scan", "verify", "attach", "maintenance")
OPS_PASSWORD = "webhook-tests"


@pytest.fixture(scope="module")
def private(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    stack = PrivateStack(
        settings,
        tmp_path_factory.mktemp("webhooks"),
        webhook_retry_base_seconds=0.5,
        webhook_retry_max_seconds=2.0,
        webhook_timeout=3.0,
        # The pool here has two processes: a slow receiver may hold one of them.
        webhook_receiver_concurrency=1,
        ops_password=OPS_PASSWORD,
    )
    stack.start_clamd()
    stack.start_worker()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def hooks(private: PrivateStack) -> Webhooks:
    return Webhooks(private.records.engine, SecretBox(private.settings.webhook_secret_key))


def _deliveries(hooks: Webhooks, sub_id: str) -> list[Delivery]:
    return [d for d in hooks.deliveries(limit=1000) if d.subscription_id == sub_id]


def _wait_deliveries(
    hooks: Webhooks, sub_id: str, ok: object, timeout: float = 30, what: str = ""
) -> list[Delivery]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _deliveries(hooks, sub_id)
        if ok(rows):  # type: ignore[operator]
            return rows
        time.sleep(0.1)
    raise AssertionError(f"deliveries not {what} after {timeout}s: {_deliveries(hooks, sub_id)}")


def _attached(private: PrivateStack, profile: str, n: int) -> list[str]:
    ids = [private.submit(f"w{i}.png", png_bytes(6 + i, 6), "image/png", profile) for i in range(n)]
    assert [private.wait(i) for i in ids] == ["attached"] * n
    return ids


def test_a_receiver_answering_500_gets_the_same_webhook_id_again(
    private: PrivateStack, hooks: Webhooks
) -> None:
    receiver = Receiver().start()
    receiver.script = [500, 503]
    sub = hooks.add_subscription(receiver.url, None, None)
    try:
        started = time.monotonic()
        [upload_id] = _attached(private, private.profile(), 1)
        receiver.wait_for(lambda got: len(got) >= 3)
        got = receiver.received()
        assert len({r.id for r in got}) == 1  # one event, three attempts, one webhook-id
        assert [r.body for r in got] == [got[0].body] * 3  # the same bytes each time
        for r in got:  # each attempt signed afresh (its own timestamp), each verifies
            assert verified(sub.secret, r)["data"]["uploadId"] == upload_id
        [d] = _wait_deliveries(
            hooks, sub.id, lambda rows: rows and rows[0].state == "delivered", what="delivered"
        )
        assert (d.attempts, d.last_status, d.event_id) == (3, 200, got[0].id)
        # First retry within the base (0.5 s here), the second within twice that.
        assert time.monotonic() - started < 20
    finally:
        receiver.stop()
        hooks.remove_subscription(sub.id)


def test_a_trickling_receiver_is_cut_at_the_deadline_and_starves_no_one(
    private: PrivateStack, hooks: Webhooks
) -> None:
    """Issue 23: a receiver that sends its answer a byte every half second (each read quick)
    held an attempt until Celery's time limit, unrecorded, and two of them held the whole pool."""
    trickler = Trickler(pause=0.5).start()
    healthy = Receiver().start()
    slow = hooks.add_subscription(trickler.url, None, ["upload.attached"])
    fast = hooks.add_subscription(healthy.url, None, ["upload.attached"])
    try:
        started = time.monotonic()
        _attached(private, private.profile(), 3)
        # The healthy receiver is served while the trickler holds its one process.
        healthy.wait_for(lambda got: len({r.id for r in got}) == 3, timeout=20)
        # Every attempt at the trickler ends at the 3 s deadline, on the record.
        rows = _wait_deliveries(
            hooks,
            slow.id,
            lambda rows: len(rows) == 3 and all(d.attempts >= 1 for d in rows),
            timeout=40,
            what="each attempted once",
        )
        assert all(d.state == "pending" and "within 3 s" in (d.last_error or "") for d in rows), (
            rows
        )
        assert trickler.most_held == 1  # ATTACHD_WEBHOOK_RECEIVER_CONCURRENCY
        # Three attempts one after another, 3 s each, and the waits between: not 26 s each.
        assert time.monotonic() - started < 40
    finally:
        trickler.stop()
        healthy.stop()
        hooks.remove_subscription(slow.id)
        hooks.remove_subscription(fast.id)


def test_a_receiver_down_for_a_while_gets_everything_afterwards(
    private: PrivateStack, hooks: Webhooks
) -> None:
    receiver = Receiver(port=_free_port())  # not listening yet: connection refused
    sub = hooks.add_subscription(receiver.url, None, ["upload.attached"])
    try:
        _attached(private, private.profile(), 3)
        _wait_deliveries(
            hooks,
            sub.id,
            lambda rows: len(rows) == 3 and all(d.attempts >= 3 for d in rows),
            what="retried three times each",
        )
        rows = _deliveries(hooks, sub.id)
        assert {d.state for d in rows} == {"pending"}
        assert all(d.last_error and "Connection" in d.last_error for d in rows), rows
        # Still down for another round: each delivery is tried again and refused again.
        tried = {d.id: d.attempts for d in rows}
        _wait_deliveries(
            hooks,
            sub.id,
            lambda now: all(d.attempts > tried[d.id] and d.state == "pending" for d in now),
            what="tried again while the receiver is down",
        )
        receiver.start()
        receiver.wait_for(lambda got: len({r.id for r in got}) == 3, timeout=30)
        _wait_deliveries(
            hooks,
            sub.id,
            lambda rows: {d.state for d in rows} == {"delivered"},
            what="all delivered",
        )
        assert set(receiver.ids()) == {d.event_id for d in rows}
    finally:
        receiver.stop()
        hooks.remove_subscription(sub.id)


def test_a_delivery_given_up_on_is_failed_visible_and_can_be_sent_again(
    private: PrivateStack, hooks: Webhooks
) -> None:
    receiver = Receiver(port=_free_port())
    sub = hooks.add_subscription(receiver.url, None, ["upload.failed"])
    try:
        # A failed upload: its staged file vanished before the scan.
        private.stop_worker()
        profile = private.profile()
        upload_id = private.submit("gone.png", png_bytes(), "image/png", profile)
        private.objects.delete(private.settings.bucket_staging, staging_key(upload_id))
        private.start_worker()
        assert private.wait(upload_id) == "failed"
        [d] = _wait_deliveries(hooks, sub.id, lambda rows: len(rows) == 1, what="written")
        # The give-up, as an attempt a day later would make it (a policy with no window left).
        policy = Policy.from_settings(private.settings)
        late = Courier(
            hooks,
            Policy(
                policy.timeout, policy.retry_base, policy.retry_max, 0.0, policy.allowed_networks
            ),
            sender(private.celery),
        )
        _wait_deliveries(hooks, sub.id, lambda rows: rows[0].attempts >= 1, what="attempted")
        deadline = time.monotonic() + 10
        while _deliveries(hooks, sub.id)[0].state == "pending" and time.monotonic() < deadline:
            late.deliver(d.id)  # races the worker's own retries; either may make the attempt
            time.sleep(0.2)
        [failed] = _deliveries(hooks, sub.id)
        assert failed.state == "failed" and failed.last_error
        env = {**private.env}
        listed = cli(env, "webhook", "deliveries", "--failed")
        assert d.id in listed and "upload.failed" in listed
        receiver.start()
        cli(env, "webhook", "redeliver", d.id)
        receiver.wait_for(lambda got: len(got) == 1)
        event = verified(sub.secret, receiver.received()[0])
        assert event["type"] == "upload.failed" and event["data"]["reason"] == "object_missing"
        _wait_deliveries(hooks, sub.id, lambda rows: rows[0].state == "delivered", what="delivered")
    finally:
        receiver.stop()
        hooks.remove_subscription(sub.id)


def test_broker_restarted_empty_loses_no_event(private: PrivateStack, hooks: Webhooks) -> None:
    receiver = Receiver().start()
    sub = hooks.add_subscription(receiver.url, None, ["upload.attached"])
    try:
        # A worker that runs the pipeline but not the webhooks queue: the deliveries' messages
        # wait in Redis...
        private.stop_worker()
        private.start_worker(queues=PIPELINE_QUEUES)
        _attached(private, private.profile(), 3)
        client = redis.Redis.from_url(private.settings.redis_url)
        assert client.llen("webhooks") == 3
        client.close()
        private.flush_broker()  # ...and Redis restarts empty: the messages are gone.
        private.stop_worker()
        private.start_worker()
        # A fourth event, sent after the restart: the worker consumes the webhooks queue again,
        # and the fourth waits in its receiver's line behind the three whose messages were lost
        # (issue 23: one receiver's deliveries go in order).
        _attached(private, private.profile(), 1)
        rows = _wait_deliveries(hooks, sub.id, lambda rows: len(rows) == 4, what="four")
        assert {d.state for d in rows} == {DeliveryState.PENDING}
        # The reconciler's sweep once the deliveries' lease ran out (a minute after their
        # writer sent them), as beat runs it every minute: the three lost ones go out (and the
        # fourth with them, if its own wait has run out by then).
        reconciler = Courier(
            hooks,
            Policy.from_settings(private.settings),
            sender(private.celery),
            clock=lambda: utcnow() + timedelta(seconds=61),
        )
        assert reconciler.sweep() >= 3
        delivered = _wait_deliveries(
            hooks, sub.id, lambda rows: {d.state for d in rows} == {"delivered"}, what="delivered"
        )
        receiver.wait_for(lambda got: len({r.id for r in got}) == 4)
        # Every event once: none lost with the broker, none sent twice (a delivery swept while
        # its own message is on its way is claimed once: one request).
        assert receiver.ids() == Counter(d.event_id for d in delivered)
    finally:
        receiver.stop()
        hooks.remove_subscription(sub.id)


def test_metrics_and_dashboard_show_the_outbox(private: PrivateStack, hooks: Webhooks) -> None:
    live = Receiver().start()
    dead = Receiver(port=_free_port())
    subs = [hooks.add_subscription(r.url, None, ["upload.attached"]) for r in (live, dead)]
    try:
        _attached(private, private.profile(), 1)
        live.wait_for(lambda got: len(got) == 1)
        _wait_deliveries(hooks, subs[1].id, lambda rows: rows[0].attempts >= 1, what="tried")
        if private.api is None:
            private.start_api()
        auth = ("ops", OPS_PASSWORD)
        text = requests.get(private.base_url + "/metrics", auth=auth, timeout=10).text
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        stats = hooks.stats()
        assert stats.by_state["pending"] >= 1 and stats.by_state["delivered"] >= 1
        for state, n in stats.by_state.items():
            assert values[("attachd_webhook_deliveries", (("state", state),))] == n
        assert values[("attachd_webhook_outbox_oldest_age_seconds", ())] > 0
        assert values[("attachd_webhook_attempts_total", (("outcome", "delivered"),))] >= 1
        assert values[("attachd_webhook_attempts_total", (("outcome", "connection_error"),))] >= 1
        page = requests.get(private.base_url + "/ops/dashboard", auth=auth, timeout=10).text
        delivered = stats.by_state["delivered"]
        assert f'data-metric="webhooks:delivered">{delivered}<' in page
        overview = requests.get(private.base_url + "/ops/overview", auth=auth, timeout=10).json()
        assert overview["webhooks"]["deliveries"]["pending"] >= 1
    finally:
        live.stop()
        for sub in subs:
            hooks.remove_subscription(sub.id)
