"""Issue 23: a delivery whose receiver already has its share of attempts in flight waits in line,
without using an attempt and without being sent again (a typed fake of the store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from core.webhooks import DeliveryState, new_secret
from storage.webhooks import Delivery, Job, Subscription, Webhooks
from workers.webhooks import Courier, Policy

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class BusyStore:
    """The outbox as Courier.deliver sees it: one due delivery, and a claim refused because
    its receiver has no place for it now."""

    def __init__(self) -> None:
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

    def record_failure(self, *args: Any) -> bool:
        self.recorded.append(args)
        return True

    record_delivered = record_failure


def test_a_delivery_refused_its_place_waits_in_line_unsent_and_uses_no_attempt() -> None:
    """One busy receiver with thousands of deliveries waiting must not churn the pool: the
    refused one is neither sent again nor counted; the head of the line goes when a place
    frees up (test_webhooks_faults.py shows that on the real stack)."""
    store = BusyStore()
    sent: list[tuple[str, float]] = []
    policy = Policy(1.0, 1.0, 2.0, 60.0, (), per_receiver=2)
    courier = Courier(
        cast(Webhooks, store), policy, lambda i, c: sent.append((i, c)), clock=lambda: NOW
    )
    assert courier.deliver("d" * 24) == "waiting in line"
    assert sent == [] and store.recorded == []
