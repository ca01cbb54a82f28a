"""The record store: tenants, access tokens, profiles, attachments and the per-upload state machine.

SQLAlchemy Core over SQLite (embedded default) or PostgreSQL. Driver errors become the project's
own exceptions here; nothing above this module sees SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from core.domain import ACTIVE, TERMINAL, State
from core.errors import Conflict, NotFound, ProfileExists, ServiceUnavailable, TenantExists
from storage import schema
from storage.schema import attachments, profiles, tenants, uploads


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def new_object_id() -> str:
    """24 lowercase hex characters, the shape of Crafter's MongoDB ObjectIds."""
    return secrets.token_hex(12)


def token_digest(token_id: str) -> str:
    return hashlib.sha256(token_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Token:
    prefix: str
    application: str
    master: bool
    tenant_permissions: list[dict[str, Any]]
    expires_on: datetime | None
    created_at: datetime

    def expired(self, now: datetime) -> bool:
        return self.expires_on is not None and self.expires_on <= now

    def allows(self, tenant: str, action: str) -> bool:
        """Crafter's rule: the first permission entry whose tenant matches decides."""
        for entry in self.tenant_permissions:
            if entry.get("tenant") in ("*", tenant):
                actions = entry.get("allowedActions") or []
                return "*" in actions or action in actions
        return False


@dataclass(frozen=True)
class Profile:
    id: str
    tenant: str
    username: str
    email: str
    verified: bool
    enabled: bool
    roles: list[str]
    attributes: dict[str, Any]
    created_on: datetime
    last_modified: datetime


@dataclass(frozen=True)
class Upload:
    seq: int
    id: str
    attachment_id: str
    state: str
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


@dataclass(frozen=True)
class Attachment:
    id: str
    profile_id: str
    file_name: str
    current_upload_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class AttachOutcome:
    """What attach() did: whether this upload became the served version, and what it replaced."""

    current: bool
    replaced: Upload | None


_UPLOAD_FIELDS = tuple(f.name for f in fields(Upload))
_DATETIME_FIELDS = {
    "created_at",
    "updated_at",
    "scanned_at",
    "verified_at",
    "finished_at",
    "resend_after",
}


def _upload(row: Any) -> Upload:
    m = row._mapping
    values: dict[str, Any] = {
        k: (as_utc(m[k]) if k in _DATETIME_FIELDS else m[k]) for k in _UPLOAD_FIELDS
    }
    return Upload(**values)


def _attachment(row: Any) -> Attachment:
    m = row._mapping
    return Attachment(
        id=m["id"],
        profile_id=m["profile_id"],
        file_name=m["file_name"],
        current_upload_id=m["current_upload_id"],
        created_at=as_utc(m["created_at"]) or utcnow(),
    )


def _profile(row: Any) -> Profile:
    m = row._mapping
    return Profile(
        id=m["id"],
        tenant=m["tenant"],
        username=m["username"],
        email=m["email"],
        verified=m["verified"],
        enabled=m["enabled"],
        roles=list(m["roles"] or []),
        attributes=dict(m["attributes"] or {}),
        created_on=as_utc(m["created_on"]) or utcnow(),
        last_modified=as_utc(m["last_modified"]) or utcnow(),
    )


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


class RecordStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> RecordStore:
        return cls(make_engine(url))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; driver failures leave as ServiceUnavailable. Public for the
        read-only queries of storage.stats."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise ServiceUnavailable("database", type(exc.orig).__name__) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise ServiceUnavailable("database", type(exc.orig).__name__) from exc
            raise

    def ping(self) -> None:
        with self.transaction() as conn:
            conn.execute(select(1))

    # --- tenants ------------------------------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        try:
            with self.transaction() as conn:
                conn.execute(insert(tenants).values(name=name, created_at=utcnow()))
        except IntegrityError:
            raise TenantExists(f"Tenant '{name}' already exists") from None

    def tenant_exists(self, name: str) -> bool:
        with self.transaction() as conn:
            return (
                conn.execute(select(tenants.c.id).where(tenants.c.name == name)).first() is not None
            )

    def list_tenants(self) -> list[str]:
        with self.transaction() as conn:
            return list(conn.execute(select(tenants.c.name).order_by(tenants.c.name)).scalars())

    # --- access tokens ------------------------------------------------------------------------

    def create_token(
        self,
        application: str,
        tenant_permissions: list[dict[str, Any]],
        *,
        master: bool = False,
        expires_on: datetime | None = None,
    ) -> str:
        token_id = str(uuid.uuid4())
        with self.transaction() as conn:
            conn.execute(
                insert(schema.access_tokens).values(
                    id_sha256=token_digest(token_id),
                    prefix=token_id[:8],
                    application=application,
                    master=master,
                    tenant_permissions=tenant_permissions,
                    expires_on=expires_on,
                    created_at=utcnow(),
                )
            )
        return token_id

    def find_token(self, token_id: str) -> Token | None:
        digest = token_digest(token_id)
        t = schema.access_tokens
        with self.transaction() as conn:
            row = conn.execute(select(t).where(t.c.id_sha256 == digest)).first()
        # The lookup is by digest; the final comparison is constant-time all the same.
        if row is None or not hmac.compare_digest(row.id_sha256, digest):
            return None
        return self._token(row)

    @staticmethod
    def _token(row: Any) -> Token:
        return Token(
            prefix=row.prefix,
            application=row.application,
            master=row.master,
            tenant_permissions=list(row.tenant_permissions),
            expires_on=as_utc(row.expires_on),
            created_at=as_utc(row.created_at) or utcnow(),
        )

    def list_tokens(self) -> list[Token]:
        t = schema.access_tokens
        with self.transaction() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at)).all()
        return [self._token(r) for r in rows]

    def revoke_token(self, token_id_or_prefix: str) -> int:
        """Revoke by full id, or by the 8-character prefix `token list` shows when it is unique."""
        t = schema.access_tokens
        with self.transaction() as conn:
            result = conn.execute(
                delete(t).where(t.c.id_sha256 == token_digest(token_id_or_prefix))
            )
            if result.rowcount:
                return result.rowcount
            if len(token_id_or_prefix) == 8:
                matches = conn.execute(
                    select(t.c.id_sha256).where(t.c.prefix == token_id_or_prefix)
                ).all()
                if len(matches) == 1:
                    return conn.execute(delete(t).where(t.c.id_sha256 == matches[0][0])).rowcount
                if len(matches) > 1:
                    raise Conflict(f"Prefix '{token_id_or_prefix}' matches several tokens")
        raise NotFound(f"No access token '{token_id_or_prefix}'")

    # --- profiles -----------------------------------------------------------------------------

    def create_profile(
        self,
        tenant: str,
        username: str,
        email: str,
        *,
        enabled: bool,
        password_hash: str | None = None,
        roles: Sequence[str] = (),
        attributes: dict[str, Any] | None = None,
    ) -> Profile:
        now = utcnow()
        profile_id = new_object_id()
        try:
            with self.transaction() as conn:
                conn.execute(
                    insert(profiles).values(
                        id=profile_id,
                        tenant=tenant,
                        username=username,
                        email=email,
                        password_hash=password_hash,
                        verified=False,
                        enabled=enabled,
                        roles=list(roles),
                        attributes=attributes or {},
                        created_on=now,
                        last_modified=now,
                    )
                )
        except IntegrityError:
            raise ProfileExists(f"A profile with username '{username}' already exists") from None
        found = self.get_profile(profile_id)
        assert found is not None
        return found

    def get_profile(self, profile_id: str) -> Profile | None:
        with self.transaction() as conn:
            row = conn.execute(select(profiles).where(profiles.c.id == profile_id)).first()
        return _profile(row) if row else None

    def find_profile_by_username(self, tenant: str, username: str) -> Profile | None:
        with self.transaction() as conn:
            row = conn.execute(
                select(profiles).where(profiles.c.tenant == tenant, profiles.c.username == username)
            ).first()
        return _profile(row) if row else None

    # --- attachments and uploads --------------------------------------------------------------

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
                        attachment = _attachment(row)
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
                    upload = Upload(**{**unset, **values, "seq": key[0]})
                    return attachment, upload
            except IntegrityError:
                # Two first uploads of the same name raced to create the attachment row: the
                # loser retries and reuses the winner's row (and its id).
                continue
        raise ServiceUnavailable("database", "could not record the upload")

    def get_upload(self, upload_id: str) -> Upload | None:
        with self.transaction() as conn:
            row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        return _upload(row) if row else None

    def transition(
        self, upload_id: str, expected: str | Sequence[str], new_state: str, **values: Any
    ) -> bool:
        """Compare-and-set: move the upload to new_state only if it is in one of `expected`.
        Returns whether this call made the change."""
        states = (expected,) if isinstance(expected, str) else tuple(expected)
        now = utcnow()
        # Moving on is progress: the reconciler's count of re-sends starts again.
        extra = {"attempts": 0, "resend_after": None, **values}
        if new_state in tuple(TERMINAL):
            extra.setdefault("finished_at", now)
        with self.transaction() as conn:
            result = conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.state.in_(states))
                .values(state=new_state, updated_at=now, **extra)
            )
        return result.rowcount == 1

    def update_upload(self, upload_id: str, expected_state: str, **values: Any) -> bool:
        """Set fields while the upload stays in expected_state (also a compare-and-set)."""
        with self.transaction() as conn:
            result = conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.state == expected_state)
                .values(updated_at=utcnow(), **values)
            )
        return result.rowcount == 1

    def mark_resent(self, upload_id: str, attempts: int, next_after: datetime) -> None:
        """The reconciler re-sent it: count that, and say when it may re-send again."""
        with self.transaction() as conn:
            conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(attempts=attempts, resend_after=next_after)
            )

    def attach(self, upload_id: str, object_key: str) -> AttachOutcome | None:
        """verifying → attached and point the attachment at this version, in one transaction.

        A version older than the one already served never replaces it (two re-uploads whose
        pipelines finish out of order). Returns None when the upload was not in `verifying`
        with its checks done (already attached, or gone)."""
        now = utcnow()
        with self.transaction() as conn:
            changed = conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.state == State.VERIFYING,
                    uploads.c.verified_at.is_not(None),
                )
                .values(
                    state=State.ATTACHED,
                    object_key=object_key,
                    staging_key=None,
                    updated_at=now,
                    finished_at=now,
                )
            ).rowcount
            if changed != 1:
                return None
            up = _upload(conn.execute(select(uploads).where(uploads.c.id == upload_id)).one())
            att = conn.execute(
                select(attachments).where(attachments.c.id == up.attachment_id)
            ).one()
            previous: Upload | None = None
            if att.current_upload_id:
                prev_row = conn.execute(
                    select(uploads).where(uploads.c.id == att.current_upload_id)
                ).first()
                previous = _upload(prev_row) if prev_row else None
            if previous is not None and previous.seq > up.seq:
                return AttachOutcome(current=False, replaced=None)
            conn.execute(
                update(attachments)
                .where(attachments.c.id == att.id)
                .values(current_upload_id=upload_id)
            )
            return AttachOutcome(current=True, replaced=previous)

    def supersede(self, upload_id: str, reason: str) -> bool:
        """An attached version that is no longer current is not served: it becomes history
        (`superseded`) and loses its object key; the caller deletes the object."""
        return self.transition(
            upload_id, State.ATTACHED, State.SUPERSEDED, reason=reason, object_key=None
        )

    def detach_infected(self, upload_id: str, **values: Any) -> bool:
        """attached → infected on a rescan, and stop serving it, in one transaction."""
        now = utcnow()
        with self.transaction() as conn:
            changed = conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.state == State.ATTACHED)
                .values(
                    state=State.INFECTED,
                    object_key=None,
                    updated_at=now,
                    finished_at=now,
                    **values,
                )
            ).rowcount
            if changed == 1:
                conn.execute(
                    update(attachments)
                    .where(attachments.c.current_upload_id == upload_id)
                    .values(current_upload_id=None)
                )
        return changed == 1

    def clear_current(self, attachment_id: str, upload_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(attachments)
                .where(
                    attachments.c.id == attachment_id, attachments.c.current_upload_id == upload_id
                )
                .values(current_upload_id=None)
            )

    def rescan_candidates(self, below: int, limit: int) -> list[Upload]:
        """Attached files scanned with a signature version lower than `below` (or unknown) and
        not yet queued for a rescan at that version."""
        with self.transaction() as conn:
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
        return [_upload(r) for r in rows]

    def mark_rescan_queued(self, upload_ids: Sequence[str], version: int) -> None:
        if not upload_ids:
            return
        with self.transaction() as conn:
            conn.execute(
                update(uploads)
                .where(uploads.c.id.in_(list(upload_ids)))
                .values(rescan_queued_version=version)
            )

    def get_attachment(self, attachment_id: str) -> Attachment | None:
        with self.transaction() as conn:
            row = conn.execute(select(attachments).where(attachments.c.id == attachment_id)).first()
        return _attachment(row) if row else None

    def find_attachment(self, profile_id: str, name_or_id: str) -> Attachment | None:
        """By fileName or by the 24-hex id, as Crafter clients use either."""
        with self.transaction() as conn:
            row = conn.execute(
                select(attachments)
                .where(
                    attachments.c.profile_id == profile_id,
                    or_(attachments.c.file_name == name_or_id, attachments.c.id == name_or_id),
                )
                # A name that happens to equal another attachment's id: the name wins.
                .order_by((attachments.c.file_name == name_or_id).desc())
            ).first()
        return _attachment(row) if row else None

    def attached_files(self, profile_id: str) -> list[tuple[Attachment, Upload]]:
        with self.transaction() as conn:
            rows = conn.execute(
                select(attachments, uploads)
                .join(uploads, uploads.c.id == attachments.c.current_upload_id)
                .where(attachments.c.profile_id == profile_id)
                .order_by(attachments.c.created_at, attachments.c.id)
            ).all()
        return [(_attachment_from_join(r), _upload_from_join(r)) for r in rows]

    def latest_upload(self, attachment_id: str) -> Upload | None:
        with self.transaction() as conn:
            row = conn.execute(
                select(uploads)
                .where(uploads.c.attachment_id == attachment_id)
                .order_by(uploads.c.seq.desc())
                .limit(1)
            ).first()
        return _upload(row) if row else None

    def delete_attachment(self, attachment_id: str) -> list[Upload]:
        """Delete the attachment and all its uploads; returns them so the caller can delete
        every object they point at."""
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads).where(uploads.c.attachment_id == attachment_id)
            ).all()
            conn.execute(delete(uploads).where(uploads.c.attachment_id == attachment_id))
            conn.execute(delete(attachments).where(attachments.c.id == attachment_id))
        return [_upload(r) for r in rows]

    def owner_of(self, attachment_id: str) -> tuple[str, str] | None:
        """(tenant, profile id) of an attachment: object keys are built from them."""
        with self.transaction() as conn:
            row = conn.execute(
                select(profiles.c.tenant, profiles.c.id)
                .join(attachments, attachments.c.profile_id == profiles.c.id)
                .where(attachments.c.id == attachment_id)
            ).first()
        return (row[0], row[1]) if row else None

    def stuck_uploads(
        self, older_than: datetime, now: datetime | None = None, limit: int = 500
    ) -> list[Upload]:
        """Uploads in a non-terminal state that have not moved since `older_than`, and whose
        re-send backoff (if any) has passed by `now`."""
        now = now or utcnow()
        with self.transaction() as conn:
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
        return [_upload(r) for r in rows]

    def uploads_in_state(self, state: str, limit: int = 1000) -> list[Upload]:
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads).where(uploads.c.state == state).order_by(uploads.c.seq).limit(limit)
            ).all()
        return [_upload(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads.c.state, func.count()).group_by(uploads.c.state)
            ).all()
        counts = dict.fromkeys(tuple(State), 0)
        counts.update({state: n for state, n in rows})
        return counts

    def staging_keys_in_use(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads.c.staging_key).where(uploads.c.staging_key.in_(list(keys)))
            ).all()
        return {r[0] for r in rows}

    def object_keys_in_use(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        with self.transaction() as conn:
            rows = conn.execute(
                select(uploads.c.object_key).where(uploads.c.object_key.in_(list(keys)))
            ).all()
        return {r[0] for r in rows}


def _attachment_from_join(row: Any) -> Attachment:
    m = row._mapping
    return Attachment(
        id=m[attachments.c.id],
        profile_id=m[attachments.c.profile_id],
        file_name=m[attachments.c.file_name],
        current_upload_id=m[attachments.c.current_upload_id],
        created_at=as_utc(m[attachments.c.created_at]) or utcnow(),
    )


def _upload_from_join(row: Any) -> Upload:
    m = row._mapping
    values = {k: m[uploads.c[k]] for k in _UPLOAD_FIELDS}
    for k in _DATETIME_FIELDS:
        values[k] = as_utc(values[k])
    return Upload(**values)
