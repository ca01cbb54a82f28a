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
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from core.domain import State
from core.errors import ServiceUnavailable
from core.tasks import Dispatch, TaskName
from core.webhooks import EVENT_FOR_STATE, DeliveryState, EventType, new_secret
from storage.broker import publish
from storage.engine import as_utc, new_object_id, utcnow
from storage.schema import attachments, profiles, uploads
from storage.secretbox import SecretBox
from storage.webhook_line import ReceiverLine, ahead, running
from storage.webhook_rows import (
    Audience,
    Delivery,
    Job,
    OutboxStats,
    Subscription,
    delivery_row,
    subscription_row,
)
from storage.webhook_schema import webhook_deliveries, webhook_events, webhook_subscriptions

# The values live in storage/webhook_rows.py; importers keep naming them here.
__all__ = ["Delivery", "Job", "OutboxStats", "Subscription", "Webhooks", "announcer"]

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


def _joined() -> Any:
    return (
        select(_dlv, _events.c.type, _events.c.body, _subs)
        .join(_events, _events.c.id == _dlv.c.event_id)
        .join(_subs, _subs.c.id == _dlv.c.subscription_id)
    )


# --- written inside the caller's transaction ----------------------------------------------------


def _interested(conn: Connection, event: EventType) -> list[Audience]:
    rows = conn.execute(select(_subs.c.id, _subs.c.tenant, _subs.c.events)).all()
    found = [
        Audience(r.id, r.tenant, tuple(r.events) if r.events is not None else None) for r in rows
    ]
    return [a for a in found if a.events is None or event in a.events]


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
    subs: Sequence[Audience],
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


class Webhooks(ReceiverLine):
    """The outbox. Its secrets are sealed with `box` on the way in and opened on the way out:
    without a key (SecretBox(())), everything but adding, rotating and reading a subscription's
    secret still works."""

    def __init__(self, engine: Engine, box: SecretBox | None = None) -> None:
        super().__init__(engine)
        self.box = box or SecretBox(())

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
                    secret=self.box.seal(sub.secret),
                    created_at=now,
                )
            )
        return sub

    def subscriptions(self) -> list[Subscription]:
        with self.reading() as conn:
            rows = conn.execute(select(_subs).order_by(_subs.c.created_at, _subs.c.id)).all()
        return [subscription_row(r, self.box) for r in rows]

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
                .values(
                    secret=self.box.seal(secret),
                    previous_secret=row[0],  # as sealed as it was
                    previous_until=utcnow() + keep,
                )
            )
        return secret

    def reseal_secrets(self) -> int:
        """Every secret under the box's first key (after a key rotation, or stored before
        encryption); returns how many subscriptions were rewritten."""
        with self.transaction() as conn:
            rows = conn.execute(select(_subs.c.id, _subs.c.secret, _subs.c.previous_secret)).all()
            for sub_id, secret, previous in rows:
                conn.execute(
                    update(_subs)
                    .where(_subs.c.id == sub_id)
                    .values(
                        secret=self.box.reseal(secret),
                        previous_secret=self.box.reseal(previous) if previous else None,
                    )
                )
        return len(rows)

    # --- deliveries ---------------------------------------------------------------------------

    def job(self, delivery_id: str) -> Job | None:
        with self.reading() as conn:
            row = conn.execute(_joined().where(_dlv.c.id == delivery_id)).first()
        if row is None:
            return None
        return Job(
            delivery_row(row),
            row._mapping[_events.c.body].encode(),
            subscription_row(row, self.box),
        )

    def claim(
        self,
        delivery_id: str,
        attempts: int,
        hold: timedelta,
        per_receiver: tuple[str, int] | None = None,
    ) -> bool:
        """Take attempt number `attempts` + 1 for `hold`, unless another task runs it: two
        messages for one delivery (a re-send crossing a slow queue) make one request. With
        `per_receiver` = (subscription id, n), also unless n attempts to it are in flight."""
        now = utcnow()
        conditions = [
            _dlv.c.id == delivery_id,
            _dlv.c.state == DeliveryState.PENDING,
            _dlv.c.attempts == attempts,
            or_(_dlv.c.running_until.is_(None), _dlv.c.running_until < now),
        ]
        with self.transaction() as conn:
            if per_receiver is not None:
                sub_id, limit = per_receiver
                # Claims of one receiver in turn (PostgreSQL: its row's lock; SQLite: the
                # UPDATE below runs under the database's write lock), so the count is exact.
                conn.execute(select(_subs.c.id).where(_subs.c.id == sub_id).with_for_update())
                # In line: the attempts in flight and the deliveries due before this one (older
                # first; a failed one goes to the back with its next attempt) leave it a place.
                # Without the line, a delivery retried every few seconds won the free place
                # each time while the others of its receiver waited (seen in the tests).
                conditions.append(running(sub_id, now) + ahead(sub_id, now) < limit)
            return (
                conn.execute(
                    update(_dlv)
                    .where(*conditions)
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
        return [delivery_row(r) for r in rows]

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
