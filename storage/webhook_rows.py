"""The webhook outbox's values (subscriptions, deliveries, what one attempt needs) and how a
row of its tables becomes one; the store that reads and writes them is storage/webhooks.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from core.webhooks import DeliveryState
from storage.engine import as_utc, utcnow
from storage.secretbox import SecretBox
from storage.webhook_schema import webhook_deliveries, webhook_events, webhook_subscriptions

_subs, _events, _dlv = webhook_subscriptions, webhook_events, webhook_deliveries


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    tenant: str | None
    events: tuple[str, ...] | None
    secret: str
    previous_secret: str | None
    previous_until: datetime | None
    created_at: datetime

    def secrets_at(self, now: datetime) -> tuple[str, ...]:
        """The secrets that sign a message sent now: the current one, and the previous one
        while its rotation grace lasts."""
        if self.previous_secret and self.previous_until and self.previous_until > now:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def wants(self, event: str, tenant: str) -> bool:
        return (self.tenant is None or self.tenant == tenant) and (
            self.events is None or event in self.events
        )


@dataclass(frozen=True)
class Audience:
    """Who wants which events: all a move's transaction needs to write deliveries (no secret)."""

    id: str
    tenant: str | None
    events: tuple[str, ...] | None

    def wants(self, event: str, tenant: str) -> bool:
        return (self.tenant is None or self.tenant == tenant) and (
            self.events is None or event in self.events
        )


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    event_type: str
    subscription_id: str
    url: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    started_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class Job:
    """What one attempt needs: the delivery, the exact body, and who receives it."""

    delivery: Delivery
    body: bytes
    subscription: Subscription


@dataclass(frozen=True)
class OutboxStats:
    by_state: dict[str, int]
    oldest_pending_age_seconds: float  # 0 when nothing is pending
    recent_failures: list[Delivery]


def subscription_row(row: Row[Any], box: SecretBox) -> Subscription:
    """The subscription with its secrets decrypted."""
    m = row._mapping
    previous = m[_subs.c.previous_secret]
    return Subscription(
        id=m[_subs.c.id],
        url=m[_subs.c.url],
        tenant=m[_subs.c.tenant],
        events=tuple(m[_subs.c.events]) if m[_subs.c.events] is not None else None,
        secret=box.open(m[_subs.c.secret]),
        previous_secret=box.open(previous) if previous else None,
        previous_until=as_utc(m[_subs.c.previous_until]),
        created_at=as_utc(m[_subs.c.created_at]) or utcnow(),
    )


def delivery_row(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(
        id=m[_dlv.c.id],
        event_id=m[_dlv.c.event_id],
        event_type=m[_events.c.type],
        subscription_id=m[_dlv.c.subscription_id],
        url=m[_subs.c.url],
        state=DeliveryState(m[_dlv.c.state]),
        attempts=m[_dlv.c.attempts],
        next_attempt_at=as_utc(m[_dlv.c.next_attempt_at]) or utcnow(),
        started_at=as_utc(m[_dlv.c.started_at]) or utcnow(),
        last_status=m[_dlv.c.last_status],
        last_error=m[_dlv.c.last_error],
        created_at=as_utc(m[_dlv.c.created_at]) or utcnow(),
        delivered_at=as_utc(m[_dlv.c.delivered_at]),
    )
