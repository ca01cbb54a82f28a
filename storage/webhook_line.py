"""A receiver's line in the outbox: how many attempts to one subscription are in flight, how many
of its due deliveries wait before a given one (scalar subqueries, for the claim's UPDATE in
storage/webhooks.py to count in the statement that writes), and which ones go next when places
free up (issue 23: one slow receiver holds a bounded share of the pool)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

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
    def heads_of_line(self, subscription_id: str, limit: int) -> list[str]:
        """The subscription's due, unclaimed deliveries that waited longest, as many as it has
        places free of `limit` attempts in flight: the next to go."""
        now = utcnow()
        with self.reading() as conn:
            free = limit - int(conn.execute(select(running(subscription_id, now))).scalar_one())
            if free <= 0:
                return []
            rows = conn.execute(
                select(_dlv.c.id)
                .where(
                    _dlv.c.subscription_id == subscription_id,
                    _dlv.c.state == DeliveryState.PENDING,
                    _dlv.c.next_attempt_at <= now,
                    or_(_dlv.c.running_until.is_(None), _dlv.c.running_until < now),
                )
                .order_by(_dlv.c.next_attempt_at, _dlv.c.id)
                .limit(free)
            ).all()
        return [str(r[0]) for r in rows]
