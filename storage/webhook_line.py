"""A receiver's line in the outbox: how many attempts to one subscription are in flight, how many
of its due deliveries wait before a given one (scalar subqueries, for the claim's UPDATE in
storage/webhooks.py to count in the statement that writes), which one is next, and deferring
one that must wait its turn (issue 23: one slow receiver holds a bounded share of the pool)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from core.webhooks import DeliveryState
from storage.engine import EngineBound, utcnow
from storage.webhook_schema import webhook_deliveries as _dlv


def running(subscription_id: str, now: datetime) -> Any:
    """How many attempts to the subscription are in flight (a scalar subquery)."""
    other = _dlv.alias("other")
    return (
        select(func.count())
        .select_from(other)
        .where(
            other.c.subscription_id == subscription_id,
            other.c.state == DeliveryState.PENDING,
            other.c.running_until > now,
        )
        .scalar_subquery()
    )


def ahead(subscription_id: str, now: datetime) -> Any:
    """How many of the subscription's due deliveries wait before the row being updated (a scalar
    subquery correlated with the UPDATE of webhook_deliveries)."""
    other = _dlv.alias("ahead")
    return (
        select(func.count())
        .select_from(other)
        .where(
            other.c.subscription_id == subscription_id,
            other.c.state == DeliveryState.PENDING,
            other.c.next_attempt_at <= now,
            or_(other.c.running_until.is_(None), other.c.running_until < now),
            or_(
                other.c.next_attempt_at < _dlv.c.next_attempt_at,
                and_(other.c.next_attempt_at == _dlv.c.next_attempt_at, other.c.id < _dlv.c.id),
            ),
        )
        .scalar_subquery()
    )


class ReceiverLine(EngineBound):
    def defer(self, delivery_id: str, attempts: int, until: datetime) -> bool:
        """After a refused claim: when the delivery is still pending and unclaimed (its
        receiver's line refused it), lease it until `until` (the sweep leaves it to the message
        sent for then) and return True; False when another task has it or it is done."""
        now = utcnow()
        with self.transaction() as conn:
            return (
                conn.execute(
                    update(_dlv)
                    .where(
                        _dlv.c.id == delivery_id,
                        _dlv.c.state == DeliveryState.PENDING,
                        _dlv.c.attempts == attempts,
                        or_(_dlv.c.running_until.is_(None), _dlv.c.running_until < now),
                    )
                    .values(lease_until=until)
                ).rowcount
                == 1
            )

    def head_of_line(self, subscription_id: str) -> str | None:
        """The subscription's due, unclaimed delivery that waited longest: the next to go when
        one of its attempts ends."""
        now = utcnow()
        with self.transaction() as conn:
            row = conn.execute(
                select(_dlv.c.id)
                .where(
                    _dlv.c.subscription_id == subscription_id,
                    _dlv.c.state == DeliveryState.PENDING,
                    _dlv.c.next_attempt_at <= now,
                    or_(_dlv.c.running_until.is_(None), _dlv.c.running_until < now),
                )
                .order_by(_dlv.c.next_attempt_at, _dlv.c.id)
                .limit(1)
            ).first()
        return None if row is None else str(row[0])

    def receiver_load(self, subscription_id: str) -> tuple[int, int]:
        """(attempts in flight, deliveries due and waiting) of one subscription."""
        now = utcnow()
        waiting = (
            select(func.count())
            .select_from(_dlv)
            .where(
                _dlv.c.subscription_id == subscription_id,
                _dlv.c.state == DeliveryState.PENDING,
                _dlv.c.next_attempt_at <= now,
                or_(_dlv.c.running_until.is_(None), _dlv.c.running_until < now),
            )
            .scalar_subquery()
        )
        with self.transaction() as conn:
            in_flight, due = conn.execute(select(running(subscription_id, now), waiting)).one()
        return int(in_flight), int(due)
