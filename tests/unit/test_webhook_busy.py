"""Issue 23: a delivery whose receiver already has its share of attempts in flight waits, without
using an attempt, and waits longer the longer that receiver's queue (a typed fake of the store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from core.webhooks import DeliveryState, new_secret
from storage.webhooks import Delivery, Job, Subscription, Webhooks
from workers.webhooks import BUSY_WAIT, BUSY_WAIT_MAX, Courier, Policy

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class BusyStore:
    """The outbox as Courier.deliver sees it: one due delivery, a claim refused because its
    receiver holds `running` attempts, `waiting` more due behind it."""

    def __init__(self, running: int, waiting: int, in_line: bool = True) -> None:
        self.load = (running, waiting)
        self.in_line = in_line
        self.deferred: list[datetime] = []
        self.recorded: list[Any] = []
        sub = Subscription(
            "s" * 24, "https://x.example/", None, None, new_secret(), None, None, NOW
        )
        delivery = Delivery(
            "d" * 24, "msg_1", "upload.attached", sub.id, sub.url, DeliveryState.PENDING,
            0, NOW - timedelta(seconds=1), NOW, None, None, NOW, None,
        )  # fmt: skip
        self.job_ = Job(delivery, b"{}", sub)

    def job(self, delivery_id: str) -> Job:
        return self.job_

    def claim(self, *args: Any) -> bool:
        return False

    def receiver_load(self, subscription_id: str) -> tuple[int, int]:
        return self.load

    def defer(self, delivery_id: str, attempts: int, until: datetime) -> bool:
        if self.in_line:
            self.deferred.append(until)
        return self.in_line

    def record_failure(self, *args: Any) -> bool:
        self.recorded.append(args)
        return True

    record_delivered = record_failure


@pytest.mark.parametrize(
    ("waiting", "low", "high"),
    [
        (1, BUSY_WAIT * 0.5, BUSY_WAIT * 1.5),
        (20, BUSY_WAIT * 10 * 0.5, BUSY_WAIT * 10 * 1.5),
        (10_000, BUSY_WAIT_MAX * 0.5, BUSY_WAIT_MAX * 1.5),
    ],
)
def test_a_busy_receivers_delivery_waits_longer_the_longer_its_queue(
    waiting: int, low: float, high: float
) -> None:
    store = BusyStore(running=2, waiting=waiting)
    sent: list[tuple[str, float]] = []
    policy = Policy(1.0, 1.0, 2.0, 60.0, (), per_receiver=2)
    courier = Courier(
        cast(Webhooks, store), policy, lambda i, c: sent.append((i, c)), clock=lambda: NOW
    )
    assert courier.deliver("d" * 24) == "receiver busy"
    [(delivery_id, countdown)] = sent
    assert delivery_id == "d" * 24 and low <= countdown <= high
    assert store.recorded == []  # not an attempt
    # Leased past its message's time, so the reconciler's sweep does not send it meanwhile.
    [until] = store.deferred
    assert until > NOW + timedelta(seconds=countdown)


def test_a_refused_claim_of_a_delivery_another_task_holds_sends_nothing() -> None:
    store = BusyStore(running=1, waiting=5, in_line=False)
    sent: list[tuple[str, float]] = []
    courier = Courier(
        cast(Webhooks, store),
        Policy(1.0, 1.0, 2.0, 60.0, (), per_receiver=2),
        lambda i, c: sent.append((i, c)),
        clock=lambda: NOW,
    )
    assert courier.deliver("d" * 24) == "held by another task"
    assert sent == [] and store.recorded == []
