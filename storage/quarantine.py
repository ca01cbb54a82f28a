"""The quarantine as operators review it: what is held, releasing a false positive, purging old
evidence, and the audit trail of both. The record of an infected upload is never deleted; only
its quarantined object is. The trail is appended to, in the transaction of the act it records,
and this store has no way to change or delete an entry of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from core.domain import QuarantineAction, State
from core.webhooks import EventType
from storage import webhooks as outbox
from storage.engine import EngineBound, as_utc, utcnow
from storage.schema import attachments, profiles, quarantine_audit, uploads
from storage.uploads import Upload, check_moves, compare_and_set, upload_from_row


@dataclass(frozen=True)
class Quarantined:
    upload: Upload
    tenant: str
    profile_id: str
    file_name: str


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    upload_id: str
    tenant: str | None
    profile_id: str | None
    file_name: str | None
    action: QuarantineAction
    actor: str
    reason: str
    signature: str | None  # the verdict the act concerned
    signature_version: int | None
    at: datetime


def _append(
    conn: Connection,
    upload_id: str,
    action: QuarantineAction,
    actor: str,
    reason: str,
    now: datetime,
) -> None:
    """One entry, with the upload's verdict and whose file it is, read in the same transaction."""
    row = conn.execute(
        select(
            uploads.c.signature,
            uploads.c.signature_version,
            profiles.c.tenant,
            profiles.c.id.label("owner"),
            attachments.c.file_name,
        )
        .join(attachments, attachments.c.id == uploads.c.attachment_id)
        .join(profiles, profiles.c.id == attachments.c.profile_id)
        .where(uploads.c.id == upload_id)
    ).first()
    conn.execute(
        insert(quarantine_audit).values(
            upload_id=upload_id,
            tenant=row.tenant if row else None,
            profile_id=row.owner if row else None,
            file_name=row.file_name if row else None,
            action=action,
            actor=actor,
            reason=reason,
            signature=row.signature if row else None,
            signature_version=row.signature_version if row else None,
            at=now,
        )
    )


class Quarantine(EngineBound):
    def quarantined(self, tenant: str | None = None, limit: int = 1000) -> list[Quarantined]:
        """Infected uploads whose evidence is still held, oldest first."""
        query = (
            select(
                uploads, profiles.c.tenant, profiles.c.id.label("owner"), attachments.c.file_name
            )
            .join(attachments, attachments.c.id == uploads.c.attachment_id)
            .join(profiles, profiles.c.id == attachments.c.profile_id)
            .where(uploads.c.state == State.INFECTED, uploads.c.quarantine_key.is_not(None))
            .order_by(uploads.c.seq)
            .limit(limit)
        )
        if tenant is not None:
            query = query.where(profiles.c.tenant == tenant)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [Quarantined(upload_from_row(r), r.tenant, r.owner, r.file_name) for r in rows]

    def release(self, upload_id: str, staging_key: str, by: str, reason: str) -> bool:
        """infected → verifying with the file back in staging, and who released it, when and
        why; the quarantined copy is the caller's to delete. A compare-and-set like every move."""
        check_moves((State.INFECTED,), State.VERIFYING)
        now = utcnow()
        with self.transaction() as conn:
            changed = compare_and_set(
                conn,
                upload_id,
                State.INFECTED,
                uploads.c.quarantine_key.is_not(None),
                state=State.VERIFYING,
                staging_key=staging_key,
                quarantine_key=None,
                # The checks run again. The verdict that quarantined it stays readable in
                # `reason` and `signature`, beside the release; it is no refusal any more.
                reason_code=None,
                verified_at=None,
                finished_at=None,
                attempts=0,
                resend_after=None,
                released_by=by,
                released_at=now,
                release_reason=reason,
                updated_at=now,
            )
            if changed:
                # Before the fields above are overwritten by a later release: the trail keeps
                # every one, with the verdict it overrode (the upload still holds it here).
                _append(conn, upload_id, QuarantineAction.RELEASED, by, reason, now)
            # In the same transaction as the move, like every event: a crash between the two
            # cannot release a file without telling the subscribers.
            events = (
                outbox.upload_event(conn, upload_id, State.VERIFYING, now, event=EventType.RELEASED)
                if changed
                else []
            )
        self._announce(events)
        return changed

    def purgeable(self, older_than: datetime, limit: int = 500) -> list[Upload]:
        """Quarantined uploads that were found infected before `older_than`."""
        with self.reading() as conn:
            rows = conn.execute(
                select(uploads)
                .where(
                    uploads.c.state == State.INFECTED,
                    uploads.c.quarantine_key.is_not(None),
                    uploads.c.finished_at < older_than,
                )
                .order_by(uploads.c.seq)
                .limit(limit)
            ).all()
        return [upload_from_row(r) for r in rows]

    def mark_purged(
        self, upload_id: str, quarantine_key: str, by: str = "system", reason: str = ""
    ) -> bool:
        """The evidence is gone: the row stays, without its key, stamped with when; the trail
        says who purged it and why."""
        now = utcnow()
        with self.transaction() as conn:
            changed = compare_and_set(
                conn,
                upload_id,
                State.INFECTED,
                uploads.c.quarantine_key == quarantine_key,
                quarantine_key=None,
                purged_at=now,
                updated_at=now,
            )
            if changed:
                _append(conn, upload_id, QuarantineAction.PURGED, by, reason, now)
        return changed

    def quarantine_audit(
        self, upload_id: str | None = None, tenant: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        """The trail, oldest first: every release and purge, of one upload or one tenant."""
        query = select(quarantine_audit).order_by(quarantine_audit.c.seq).limit(limit)
        if upload_id is not None:
            query = query.where(quarantine_audit.c.upload_id == upload_id)
        if tenant is not None:
            query = query.where(quarantine_audit.c.tenant == tenant)
        with self.transaction() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(
                seq=r.seq,
                upload_id=r.upload_id,
                tenant=r.tenant,
                profile_id=r.profile_id,
                file_name=r.file_name,
                action=QuarantineAction(r.action),
                actor=r.actor,
                reason=r.reason,
                signature=r.signature,
                signature_version=r.signature_version,
                at=as_utc(r.at) or utcnow(),
            )
            for r in rows
        ]
