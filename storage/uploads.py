"""Attachments and their uploads: the per-upload state machine, the served version of each
attachment, and the reconciler's and rescan sweep's queries.

Every state change is a compare-and-set on `state` and is checked against core.domain.TRANSITIONS
before the database is touched, so a task delivered twice has its effect once and a bug that would
make a forbidden move (say, attach an infected file) raises IllegalTransition instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.domain import ACTIVE, TERMINAL, TRANSITIONS, Reason, State
from core.errors import IllegalTransition, ServiceUnavailable
from storage import webhooks as outbox
from storage.engine import EngineBound, as_utc, new_object_id, utcnow
from storage.schema import attachments, profiles, uploads
from storage.served import Served


@dataclass(frozen=True)
class Upload(Served):
    seq: int
    id: str
    attachment_id: str
    state: State
    reason: str | None
    original_name: str
    md5: str
    sha256: str
    size: int
    declared_type: str
    sniffed_type: str | None
    detected_type: str | None
    staging_key: str | None
    object_key: str | None
    quarantine_key: str | None
    signature: str | None
    engine_version: str | None
    signature_version: int | None
    rescan_queued_version: int | None
    attempts: int
    resend_after: datetime | None
    created_at: datetime
    updated_at: datetime
    scanned_at: datetime | None
    verified_at: datetime | None
    finished_at: datetime | None
    # The typed reason beside the human one in `reason` (None while nothing went wrong). Last,
    # with a default, so an Upload built by hand (tests, fakes) need not name it.
    reason_code: Reason | None = None
    # An operator's release of a quarantined file, and the purge of its evidence.
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None
    purged_at: datetime | None = None
    # What is served when the sanitize step changed the file (migration 0005): its digests and
    # size (None: the bytes received are served), the steps that changed it ("strip,orient";
    # "" for none; None when the step did not run), and its renditions as
    # [{"px", "size", "md5", "sha256", "stored"}] (storage/served.py), each stored at
    # rendition_key(object_key, px) unless "stored" is false: then it is the file itself.
    served_md5: str | None = None
    served_sha256: str | None = None
    served_size: int | None = None
    sanitize_steps: str | None = None
    renditions: list[dict[str, Any]] | None = None
    # The type of the bytes served when it is not the one received (migration 0010): a HEIC
    # served as JPEG. None: the declared type.
    served_type: str | None = None


@dataclass(frozen=True)
class Attachment:
    id: str
    profile_id: str
    file_name: str
    current_upload_id: str | None
    created_at: datetime


_UPLOAD_FIELDS = tuple(f.name for f in fields(Upload))
_DATETIME_FIELDS = frozenset(
    {"created_at", "updated_at", "scanned_at", "verified_at", "finished_at", "resend_after"}
) | {"released_at", "purged_at"}


def upload_from_row(row: Row[Any]) -> Upload:
    """From any row that selects the uploads table, alone or joined: keyed by column objects,
    so a joined table's `id` or `created_at` cannot stand in for the upload's."""
    return _upload({k: row._mapping[uploads.c[k]] for k in _UPLOAD_FIELDS})


def _upload(values: dict[str, Any]) -> Upload:
    typed: dict[str, Any] = {
        k: as_utc(v) if k in _DATETIME_FIELDS else v for k, v in values.items()
    }
    typed["state"] = State(typed["state"])
    code = typed["reason_code"]
    typed["reason_code"] = Reason(code) if code is not None else None
    return Upload(**typed)


def attachment_from_row(row: Row[Any]) -> Attachment:
    m = row._mapping
    a = attachments.c
    return Attachment(
        id=m[a.id],
        profile_id=m[a.profile_id],
        file_name=m[a.file_name],
        current_upload_id=m[a.current_upload_id],
        created_at=as_utc(m[a.created_at]) or utcnow(),
    )


def check_moves(expected: Iterable[str], new_state: str) -> tuple[State, ...]:
    """The expected states as State, or IllegalTransition if any expected → new_state move is
    not in core.domain.TRANSITIONS (or names no state)."""
    try:
        before = tuple(State(s) for s in expected)
        after = State(new_state)
    except ValueError as exc:
        raise IllegalTransition(str(exc)) from None
    forbidden = [s for s in before if after not in TRANSITIONS[s]]
    if forbidden:
        pairs = ", ".join(f"{s} → {after}" for s in forbidden)
        raise IllegalTransition(f"Forbidden upload state change: {pairs}")
    return before


def compare_and_set(
    conn: Connection,
    upload_id: str,
    expected: State | Iterable[State],
    *conditions: ColumnElement[bool],
    **values: Any,
) -> bool:
    """The one compare-and-set of an upload row: write `values` only if it is in (one of)
    `expected` and meets `conditions`, inside the caller's transaction. Whether this call wrote
    it: a task delivered twice, or two workers at once, write it once."""
    states = (expected,) if isinstance(expected, State) else tuple(expected)
    written = conn.execute(
        update(uploads)
        .where(uploads.c.id == upload_id, uploads.c.state.in_(states), *conditions)
        .values(**values)
    ).rowcount
    return bool(written == 1)


class Uploads(EngineBound):
    # --- intake -------------------------------------------------------------------------------

    def record_upload(
        self,
        *,
        upload_id: str,
        profile_id: str,
        file_name: str,
        original_name: str,
        md5: str,
        sha256: str,
        size: int,
        declared_type: str,
        sniffed_type: str | None,
        staging_key: str,
    ) -> tuple[Attachment, Upload]:
        """Create or reuse the attachment row for (profile, fileName) and add a `staged` upload,
        in one transaction, so the stable id and the upload appear together or not at all."""
        now = utcnow()
        for _attempt in range(3):
            try:
                with self.transaction() as conn:
                    row = conn.execute(
                        select(attachments).where(
                            attachments.c.profile_id == profile_id,
                            attachments.c.file_name == file_name,
                        )
                    ).first()
                    if row is None:
                        attachment = Attachment(
                            id=new_object_id(),
                            profile_id=profile_id,
                            file_name=file_name,
                            current_upload_id=None,
                            created_at=now,
                        )
                        conn.execute(insert(attachments).values(**asdict(attachment)))
                    else:
                        attachment = attachment_from_row(row)
                    values = {
                        "id": upload_id,
                        "attachment_id": attachment.id,
                        "state": State.STAGED,
                        "original_name": original_name,
                        "md5": md5,
                        "sha256": sha256,
                        "size": size,
                        "declared_type": declared_type,
                        "sniffed_type": sniffed_type,
                        "staging_key": staging_key,
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    result = conn.execute(insert(uploads).values(**values))
                    # Built from what was inserted rather than read back: one query less on
                    # the hot path of every upload.
                    key = result.inserted_primary_key
                    assert key is not None
                    unset = dict.fromkeys(_UPLOAD_FIELDS)
                    upload = _upload({**unset, **values, "seq": key[0]})
                    return attachment, upload
            except IntegrityError:
                # Two first uploads of the same name raced to create the attachment row: the
                # loser retries and reuses the winner's row (and its id).
                continue
        raise ServiceUnavailable("database", "could not record the upload")

    # --- the state machine --------------------------------------------------------------------

    def transition(
        self, upload_id: str, expected: str | Sequence[str], new_state: str, **values: Any
    ) -> bool:
        """Compare-and-set: move the upload to new_state only if it is in one of `expected`.
        Returns whether this call made the change. Raises IllegalTransition, before touching
        the database, when any expected → new_state move is forbidden."""
        states = check_moves((expected,) if isinstance(expected, str) else expected, new_state)
        now = utcnow()
        # Moving on is progress: the reconciler's count of re-sends starts again.
        extra = {"attempts": 0, "resend_after": None, **values}
        if new_state in TERMINAL:
            extra.setdefault("finished_at", now)
        with self.transaction() as conn:
            moved = compare_and_set(
                conn, upload_id, states, state=State(new_state), updated_at=now, **extra
            )
            events = outbox.upload_event(conn, upload_id, new_state, now) if moved else []
        self._announce(events)
        return moved

    def update_upload(self, upload_id: str, expected_state: str, **values: Any) -> bool:
        """Set fields while the upload stays in expected_state (also a compare-and-set). It never
        moves the state: that is transition()'s job, checked against the table."""
        if "state" in values:
            raise IllegalTransition("update_upload() does not change the state; use transition()")
        with self.transaction() as conn:
            return compare_and_set(
                conn, upload_id, State(expected_state), updated_at=utcnow(), **values
            )

    def mark_resent(self, upload_id: str, attempts: int, next_after: datetime) -> None:
        """The reconciler re-sent it: count that, and say when it may re-send again."""
        with self.transaction() as conn:
            conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(attempts=attempts, resend_after=next_after)
            )

    # --- reads --------------------------------------------------------------------------------

    def get_upload(self, upload_id: str) -> Upload | None:
        with self.reading() as conn:
            row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        return upload_from_row(row) if row else None

    def get_attachment(self, attachment_id: str) -> Attachment | None:
        with self.reading() as conn:
            row = conn.execute(select(attachments).where(attachments.c.id == attachment_id)).first()
        return attachment_from_row(row) if row else None

    def find_attachment(self, profile_id: str, name_or_id: str) -> Attachment | None:
        """By fileName or by the 24-hex id, as Crafter clients use either."""
        with self.reading() as conn:
            row = conn.execute(
                select(attachments)
                .where(
                    attachments.c.profile_id == profile_id,
                    or_(attachments.c.file_name == name_or_id, attachments.c.id == name_or_id),
                )
                # A name that happens to equal another attachment's id: the name wins.
                .order_by((attachments.c.file_name == name_or_id).desc())
            ).first()
        return attachment_from_row(row) if row else None

    def attached_files(self, profile_id: str) -> list[tuple[Attachment, Upload]]:
        with self.reading() as conn:
            rows = conn.execute(
                select(attachments, uploads)
                .join(uploads, uploads.c.id == attachments.c.current_upload_id)
                .where(attachments.c.profile_id == profile_id)
                .order_by(attachments.c.created_at, attachments.c.id)
            ).all()
        return [(attachment_from_row(r), upload_from_row(r)) for r in rows]

    def latest_upload(self, attachment_id: str) -> Upload | None:
        with self.reading() as conn:
            row = conn.execute(
                select(uploads)
                .where(uploads.c.attachment_id == attachment_id)
                .order_by(uploads.c.seq.desc())
                .limit(1)
            ).first()
        return upload_from_row(row) if row else None

    def delete_attachment(self, attachment_id: str) -> list[Upload]:
        """Delete the attachment and all its uploads; returns them so the caller can delete
        every object they point at."""
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads).where(uploads.c.attachment_id == attachment_id)
            ).all()
            events = outbox.deleted_event(conn, attachment_id, utcnow())
            conn.execute(delete(uploads).where(uploads.c.attachment_id == attachment_id))
            conn.execute(delete(attachments).where(attachments.c.id == attachment_id))
        self._announce(events)
        return [upload_from_row(r) for r in rows]

    def owner_of(self, attachment_id: str) -> tuple[str, str] | None:
        """(tenant, profile id) of an attachment: object keys are built from them."""
        with self.reading() as conn:
            row = conn.execute(
                select(profiles.c.tenant, profiles.c.id)
                .join(attachments, attachments.c.profile_id == profiles.c.id)
                .where(attachments.c.id == attachment_id)
            ).first()
        return (row[0], row[1]) if row else None

    # --- sweeps: reconciler and rescan --------------------------------------------------------

    def stuck_uploads(
        self, older_than: datetime, now: datetime | None = None, limit: int = 500
    ) -> list[Upload]:
        """Uploads in a non-terminal state that have not moved since `older_than`, and whose
        re-send backoff (if any) has passed by `now`."""
        now = now or utcnow()
        with self.reading() as conn:
            rows = conn.execute(
                select(uploads)
                .where(
                    uploads.c.state.in_(tuple(ACTIVE)),
                    uploads.c.updated_at < older_than,
                    or_(uploads.c.resend_after.is_(None), uploads.c.resend_after < now),
                )
                .order_by(uploads.c.seq)
                .limit(limit)
            ).all()
        return [upload_from_row(r) for r in rows]

    def rescan_candidates(self, below: int, limit: int) -> list[Upload]:
        """Attached files scanned with a signature version lower than `below` (or unknown) and
        not yet queued for a rescan at that version."""
        with self.reading() as conn:
            rows = conn.execute(
                select(uploads)
                .where(
                    uploads.c.state == State.ATTACHED,
                    or_(uploads.c.signature_version.is_(None), uploads.c.signature_version < below),
                    or_(
                        uploads.c.rescan_queued_version.is_(None),
                        uploads.c.rescan_queued_version < below,
                    ),
                )
                .order_by(uploads.c.seq)
                .limit(limit)
            ).all()
        return [upload_from_row(r) for r in rows]

    def mark_rescan_queued(self, upload_ids: Sequence[str], version: int) -> None:
        if not upload_ids:
            return
        with self.transaction() as conn:
            conn.execute(
                update(uploads)
                .where(uploads.c.id.in_(list(upload_ids)))
                .values(rescan_queued_version=version)
            )

    def uploads_in_state(self, state: str, limit: int = 1000) -> list[Upload]:
        with self.reading() as conn:
            rows = conn.execute(
                select(uploads).where(uploads.c.state == state).order_by(uploads.c.seq).limit(limit)
            ).all()
        return [upload_from_row(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads.c.state, func.count()).group_by(uploads.c.state)
            ).all()
        counts: dict[str, int] = dict.fromkeys(tuple(State), 0)
        counts.update({state: n for state, n in rows})
        return counts

    def staging_keys_in_use(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        with self.reading() as conn:
            rows = conn.execute(
                select(uploads.c.staging_key).where(uploads.c.staging_key.in_(list(keys)))
            ).all()
        return {r[0] for r in rows}
