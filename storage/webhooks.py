"""The webhook outbox: subscriptions, and the events and deliveries written in the same
transaction as the upload move (or the attachment delete) that causes them.

`upload_event` / `deleted_event` run on the caller's connection, inside its transaction: if the
move commits, its deliveries exist; if it rolls back, they never did. A crash between the move
and the send loses nothing; the reconciler finds the delivery still pending. Nothing is written
when no subscription wants the event, so an installation without webhooks pays one small read.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import Connection, Row, delete, func, insert, or_, select, update

from core.domain import State
from core.errors import ServiceUnavailable
from core.tasks import Dispatch, TaskName
from core.webhooks import EVENT_FOR_STATE, DeliveryState, EventType, new_secret
from storage.broker import publish
from storage.engine import EngineBound, as_utc, new_object_id, utcnow
from storage.schema import attachments, profiles, uploads
from storage.webhook_schema import webhook_deliveries, webhook_events, webhook_subscriptions

# How long a delivery written by a move waits for the task its writer sends after commit,
# before the reconciler may send one itself (the writer died, or the broker was down).
ANNOUNCE_LEASE = timedelta(seconds=60)

_subs, _events, _dlv = webhook_subscriptions, webhook_events, webhook_deliveries

log = logging.getLogger(__name__)


def announcer(app: Celery) -> Callable[[Sequence[str]], None]:
    """What a record store is told after a commit that wrote deliveries (Uploads.announce):
    send each to the webhooks queue. Never raises: the move has happened, and the reconciler
    sends what this could not once the deliveries' lease runs out."""

    def announce(delivery_ids: Sequence[str]) -> None:
        for delivery_id in delivery_ids:
            try:
                publish(app, Dispatch(TaskName.DELIVER_WEBHOOK, delivery_id))
            except ServiceUnavailable as exc:
                log.warning("webhook %s not sent now (%s); the reconciler will", delivery_id, exc)

    return announce


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


def _subscription(row: Row[Any]) -> Subscription:
    m = row._mapping
    return Subscription(
        id=m[_subs.c.id],
        url=m[_subs.c.url],
        tenant=m[_subs.c.tenant],
        events=tuple(m[_subs.c.events]) if m[_subs.c.events] is not None else None,
        secret=m[_subs.c.secret],
        previous_secret=m[_subs.c.previous_secret],
        previous_until=as_utc(m[_subs.c.previous_until]),
        created_at=as_utc(m[_subs.c.created_at]) or utcnow(),
    )


def _delivery(row: Row[Any]) -> Delivery:
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


def _joined() -> Any:
    return (
        select(_dlv, _events.c.type, _events.c.body, _subs)
        .join(_events, _events.c.id == _dlv.c.event_id)
        .join(_subs, _subs.c.id == _dlv.c.subscription_id)
    )


# --- written inside the caller's transaction ----------------------------------------------------


def _interested(conn: Connection, event: EventType) -> list[Subscription]:
    rows = conn.execute(select(_subs)).all()
    return [s for s in map(_subscription, rows) if s.events is None or event in s.events]


def upload_event(
    conn: Connection,
    upload_id: str,
    new_state: str,
    now: datetime,
    event: EventType | None = None,
) -> list[str]:
    """The deliveries of the event the upload's move to `new_state` is, if it is one; `event`
    names it when the state alone does not (a quarantine release: EventType.RELEASED)."""
    event = event or EVENT_FOR_STATE.get(State(new_state))
    if event is None:
        return []
    subs = _interested(conn, event)
    if not subs:
        return []
    row = conn.execute(
        select(uploads, attachments.c.file_name, attachments.c.profile_id, profiles.c.tenant)
        .join(attachments, attachments.c.id == uploads.c.attachment_id)
        .join(profiles, profiles.c.id == attachments.c.profile_id)
        .where(uploads.c.id == upload_id)
    ).first()
    if row is None:
        return []
    m = row._mapping
    data = {
        "tenant": m[profiles.c.tenant],
        "profileId": m[attachments.c.profile_id],
        "attachmentId": m[uploads.c.attachment_id],
        "fileName": m[attachments.c.file_name],
        "uploadId": upload_id,
        "state": str(new_state),
        "reason": m[uploads.c.reason_code],
        "message": m[uploads.c.reason],
        "md5": m[uploads.c.md5],
        "fileSizeBytes": m[uploads.c.size],
        "contentType": m[uploads.c.detected_type] or m[uploads.c.declared_type],
    }
    if m[uploads.c.signature]:
        data["signature"] = m[uploads.c.signature]
    return _fan_out(conn, event, subs, data, now)


def deleted_event(conn: Connection, attachment_id: str, now: datetime) -> list[str]:
    """The deliveries of `attachment.deleted`; call before the rows go."""
    subs = _interested(conn, EventType.DELETED)
    if not subs:
        return []
    row = conn.execute(
        select(attachments, profiles.c.tenant)
        .join(profiles, profiles.c.id == attachments.c.profile_id)
        .where(attachments.c.id == attachment_id)
    ).first()
    if row is None:
        return []
    m = row._mapping
    data = {
        "tenant": m[profiles.c.tenant],
        "profileId": m[attachments.c.profile_id],
        "attachmentId": attachment_id,
        "fileName": m[attachments.c.file_name],
        "uploadId": m[attachments.c.current_upload_id],
        "state": "deleted",
    }
    return _fan_out(conn, EventType.DELETED, subs, data, now)


def _fan_out(
    conn: Connection,
    event: EventType,
    subs: Sequence[Subscription],
    data: dict[str, Any],
    now: datetime,
) -> list[str]:
    tenant = data["tenant"]
    targets = [s for s in subs if s.wants(event, tenant)]
    if not targets:
        return []
    event_id = "msg_" + secrets.token_hex(16)
    body = {"type": str(event), "timestamp": now.isoformat(timespec="milliseconds"), "data": data}
    conn.execute(
        insert(_events).values(
            id=event_id,
            type=str(event),
            tenant=tenant,
            upload_id=data.get("uploadId"),
            body=json.dumps(body, separators=(",", ":"), sort_keys=True),
            created_at=now,
        )
    )
    ids = [new_object_id() for _ in targets]
    conn.execute(
        insert(_dlv),
        [
            {
                "id": did,
                "event_id": event_id,
                "subscription_id": sub.id,
                "state": DeliveryState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "lease_until": now + ANNOUNCE_LEASE,
                "started_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for did, sub in zip(ids, targets, strict=True)
        ],
    )
    return ids


# --- the store of subscriptions and deliveries ----------------------------------------------------


class Webhooks(EngineBound):
    def add_subscription(
        self, url: str, tenant: str | None, events: Sequence[str] | None
    ) -> Subscription:
        now = utcnow()
        sub = Subscription(
            id=new_object_id(),
            url=url,
            tenant=tenant,
            events=tuple(events) if events else None,
            secret=new_secret(),
            previous_secret=None,
            previous_until=None,
            created_at=now,
        )
        with self.transaction() as conn:
            conn.execute(
                insert(_subs).values(
                    id=sub.id,
                    url=url,
                    tenant=tenant,
                    events=list(sub.events) if sub.events else None,
                    secret=sub.secret,
                    created_at=now,
                )
            )
        return sub

    def subscriptions(self) -> list[Subscription]:
        with self.reading() as conn:
            rows = conn.execute(select(_subs).order_by(_subs.c.created_at, _subs.c.id)).all()
        return [_subscription(r) for r in rows]

    def remove_subscription(self, sub_id: str) -> bool:
        """The subscription and its deliveries (pending ones are not sent any more)."""
        with self.transaction() as conn:
            conn.execute(delete(_dlv).where(_dlv.c.subscription_id == sub_id))
            return conn.execute(delete(_subs).where(_subs.c.id == sub_id)).rowcount == 1

    def rotate_secret(self, sub_id: str, keep: timedelta) -> str | None:
        """A new secret; the old one keeps signing beside it for `keep`. None: no such id."""
        secret = new_secret()
        with self.transaction() as conn:
            row = conn.execute(select(_subs.c.secret).where(_subs.c.id == sub_id)).first()
            if row is None:
                return None
            conn.execute(
                update(_subs)
                .where(_subs.c.id == sub_id)
                .values(secret=secret, previous_secret=row[0], previous_until=utcnow() + keep)
            )
        return secret

    # --- deliveries ---------------------------------------------------------------------------

    def job(self, delivery_id: str) -> Job | None:
        with self.reading() as conn:
            row = conn.execute(_joined().where(_dlv.c.id == delivery_id)).first()
        if row is None:
            return None
        return Job(_delivery(row), row._mapping[_events.c.body].encode(), _subscription(row))

    def claim(self, delivery_id: str, attempts: int, hold: timedelta) -> bool:
        """Take attempt number `attempts` + 1 for `hold`, unless another task runs it: two
        messages for one delivery (a re-send crossing a slow queue) make one request."""
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
                    .values(running_until=now + hold, lease_until=now + hold)
                ).rowcount
                == 1
            )

    def record_delivered(self, delivery_id: str, attempts: int, status: int) -> bool:
        """Compare-and-set on the attempt count seen, so a duplicate's late answer counts once."""
        now = utcnow()
        return self._finish(
            delivery_id,
            attempts,
            state=DeliveryState.DELIVERED,
            attempts=attempts + 1,
            last_status=status,
            last_error=None,
            lease_until=None,
            running_until=None,
            delivered_at=now,
            updated_at=now,
        )

    def record_failure(
        self,
        delivery_id: str,
        attempts: int,
        status: int | None,
        error: str,
        next_at: datetime | None,
        lease_until: datetime | None,
    ) -> bool:
        """A failed attempt: retry at `next_at`, or `failed` for good when it is None."""
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": attempts + 1,
            "last_status": status,
            "last_error": error[:1000],
            "updated_at": now,
            "lease_until": lease_until,
            "running_until": None,
        }
        if next_at is None:
            values.update(state=DeliveryState.FAILED, lease_until=None)
        else:
            values["next_attempt_at"] = next_at
        return self._finish(delivery_id, attempts, **values)

    def _finish(self, delivery_id: str, seen: int, **values: Any) -> bool:
        with self.transaction() as conn:
            return (
                conn.execute(
                    update(_dlv)
                    .where(
                        _dlv.c.id == delivery_id,
                        _dlv.c.state == DeliveryState.PENDING,
                        _dlv.c.attempts == seen,
                    )
                    .values(**values)
                ).rowcount
                == 1
            )

    def lease_due(self, now: datetime, lease: timedelta, limit: int = 500) -> list[str]:
        """Pending deliveries that are due and that no task holds (their message was lost, or
        their wait was too long to give Celery): leased to the caller, who sends them."""
        with self.transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    select(_dlv.c.id)
                    .where(
                        _dlv.c.state == DeliveryState.PENDING,
                        _dlv.c.next_attempt_at <= now,
                        or_(_dlv.c.lease_until.is_(None), _dlv.c.lease_until < now),
                    )
                    .order_by(_dlv.c.next_attempt_at)
                    .limit(limit)
                ).all()
            ]
            if ids:
                conn.execute(update(_dlv).where(_dlv.c.id.in_(ids)).values(lease_until=now + lease))
        return ids

    def redeliver(self, delivery_id: str) -> bool:
        """An operator's redeliver: pending again now, with a fresh retry window (a delivered
        one too: a receiver that lost what it got may ask for it again)."""
        now = utcnow()
        with self.transaction() as conn:
            return (
                conn.execute(
                    update(_dlv)
                    .where(_dlv.c.id == delivery_id)
                    .values(
                        state=DeliveryState.PENDING,
                        next_attempt_at=now,
                        started_at=now,
                        lease_until=now + ANNOUNCE_LEASE,
                        running_until=None,
                        updated_at=now,
                    )
                ).rowcount
                == 1
            )

    def deliveries(
        self, state: DeliveryState | None = None, limit: int = 100, event_id: str | None = None
    ) -> list[Delivery]:
        query = _joined().order_by(_dlv.c.created_at.desc(), _dlv.c.id).limit(limit)
        if state is not None:
            query = query.where(_dlv.c.state == state)
        if event_id is not None:
            query = query.where(_dlv.c.event_id == event_id)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [_delivery(r) for r in rows]

    def stats(self, now: datetime | None = None) -> OutboxStats:
        now = now or utcnow()
        with self.reading() as conn:
            counts: dict[str, int] = dict(
                conn.execute(select(_dlv.c.state, func.count()).group_by(_dlv.c.state)).all()
            )
            oldest = conn.execute(
                select(func.min(_dlv.c.created_at)).where(_dlv.c.state == DeliveryState.PENDING)
            ).scalar()
        by_state = {s.value: int(counts.get(s.value, 0)) for s in DeliveryState}
        oldest_utc = as_utc(oldest)
        age = max(0.0, (now - oldest_utc).total_seconds()) if oldest_utc else 0.0
        return OutboxStats(
            by_state=by_state,
            oldest_pending_age_seconds=age,
            recent_failures=self.deliveries(DeliveryState.FAILED, limit=10),
        )
