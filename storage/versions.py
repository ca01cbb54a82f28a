"""Which version of an attachment is served: attaching a verified upload (and superseding the one
it replaces, in the same transaction), and stopping to serve one found infected on a rescan.

One transaction per change of the served version, so no crash between two commits can leave two
versions of a name attached (make scale-test once caught a task stopped between the attach's
commit and a separate supersede's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from core.domain import State
from storage import webhooks as outbox
from storage.engine import EngineBound, utcnow
from storage.schema import attachments, uploads
from storage.uploads import Upload, check_moves, compare_and_set, upload_from_row

NEWER_FIRST = "a newer upload of this name was attached first"


@dataclass(frozen=True)
class AttachOutcome:
    """What attach() did: whether this upload became the served version (if not, a newer one
    was already served and this one is `superseded`), and the version it replaced (as it was
    before: now `superseded`, its objects the caller's to delete)."""

    current: bool
    replaced: Upload | None


class Versions(EngineBound):
    def attach(self, upload_id: str, object_key: str) -> AttachOutcome | None:
        """verifying → attached and point the attachment at this version; the version it
        replaces becomes `superseded` in the same transaction.

        A version older than the one already served never replaces it (two re-uploads whose
        pipelines finish out of order): it is `superseded` at once, never served. Returns None
        when the upload was not in `verifying` with its checks done (already attached, or
        gone)."""
        check_moves((State.VERIFYING,), State.ATTACHED)
        check_moves((State.ATTACHED,), State.SUPERSEDED)
        now = utcnow()
        with self.transaction() as conn:
            if not compare_and_set(
                conn,
                upload_id,
                State.VERIFYING,
                uploads.c.verified_at.is_not(None),
                state=State.ATTACHED,
                object_key=object_key,
                staging_key=None,
                updated_at=now,
                finished_at=now,
            ):
                return None
            up = upload_from_row(
                conn.execute(select(uploads).where(uploads.c.id == upload_id)).one()
            )
            # Locked: two workers attaching versions of one name at once would otherwise both
            # read the same current version, both replace it, and leave two served (PostgreSQL's
            # read committed; SQLite serializes writers anyway). Found by make scale-test.
            att = conn.execute(
                select(attachments).where(attachments.c.id == up.attachment_id).with_for_update()
            ).one()
            previous: Upload | None = None
            if att.current_upload_id:
                prev_row = conn.execute(
                    select(uploads).where(uploads.c.id == att.current_upload_id)
                ).first()
                previous = upload_from_row(prev_row) if prev_row else None
            if previous is not None and previous.seq > up.seq:
                # Never served, so no `upload.attached`; the caller deletes its object.
                _supersede(conn, upload_id, NEWER_FIRST)
                return AttachOutcome(current=False, replaced=None)
            conn.execute(
                update(attachments)
                .where(attachments.c.id == att.id)
                .values(current_upload_id=upload_id)
            )
            if previous is not None and previous.id != upload_id:
                _supersede(conn, previous.id, f"replaced by upload {upload_id}")
            events = outbox.upload_event(conn, upload_id, State.ATTACHED, now)
        self._announce(events)
        return AttachOutcome(current=True, replaced=previous)

    def detach_infected(self, upload_id: str, **values: Any) -> bool:
        """attached → infected on a rescan, and stop serving it, in one transaction."""
        check_moves((State.ATTACHED,), State.INFECTED)
        now = utcnow()
        with self.transaction() as conn:
            changed = compare_and_set(
                conn,
                upload_id,
                State.ATTACHED,
                state=State.INFECTED,
                object_key=None,
                updated_at=now,
                finished_at=now,
                **values,
            )
            events: list[str] = []
            if changed:
                conn.execute(
                    update(attachments)
                    .where(attachments.c.current_upload_id == upload_id)
                    .values(current_upload_id=None)
                )
                events = outbox.upload_event(conn, upload_id, State.INFECTED, now)
        self._announce(events)
        return changed

    def clear_current(self, attachment_id: str, upload_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(attachments)
                .where(
                    attachments.c.id == attachment_id, attachments.c.current_upload_id == upload_id
                )
                .values(current_upload_id=None)
            )


def _supersede(conn: Connection, upload_id: str, reason: str) -> None:
    """An attached version no longer current is history: `superseded`, no object key (no
    webhook event: it was attached, and nothing about the file changed)."""
    now = utcnow()
    compare_and_set(
        conn,
        upload_id,
        State.ATTACHED,
        state=State.SUPERSEDED,
        reason=reason,
        object_key=None,
        attempts=0,
        resend_after=None,
        updated_at=now,
        finished_at=now,
    )
