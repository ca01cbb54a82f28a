"""The quarantine as operators review it: what is held, releasing a false positive, purging old
evidence. The record of an infected upload is never deleted; only its quarantined object is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from core.domain import State
from core.webhooks import EventType
from storage import webhooks as outbox
from storage.engine import EngineBound, utcnow
from storage.schema import attachments, profiles, uploads
from storage.uploads import Upload, check_moves, upload_from_row


@dataclass(frozen=True)
class Quarantined:
    upload: Upload
    tenant: str
    profile_id: str
    file_name: str


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
            changed = conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.state == State.INFECTED,
                    uploads.c.quarantine_key.is_not(None),
                )
                .values(
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
            ).rowcount
            # In the same transaction as the move, like every event: a crash between the two
            # cannot release a file without telling the subscribers.
            events = (
                outbox.upload_event(conn, upload_id, State.VERIFYING, now, event=EventType.RELEASED)
                if changed == 1
                else []
            )
        self._announce(events)
        return changed == 1

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

    def mark_purged(self, upload_id: str, quarantine_key: str) -> bool:
        """The evidence is gone: the row stays, without its key, stamped with when."""
        now = utcnow()
        with self.transaction() as conn:
            changed = conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.state == State.INFECTED,
                    uploads.c.quarantine_key == quarantine_key,
                )
                .values(quarantine_key=None, purged_at=now, updated_at=now)
            ).rowcount
        return changed == 1
