"""Who may do what: tenants, access tokens (with Crafter's permission rule) and profiles."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select
from sqlalchemy.exc import IntegrityError

from core.errors import BadRequest, Conflict, NotFound, ProfileExists, TenantExists
from storage.engine import EngineBound, as_utc, new_object_id, utcnow
from storage.schema import access_tokens, profiles, tenants


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


def token_from_row(row: Row[Any]) -> Token:
    m = row._mapping
    t = access_tokens.c
    return Token(
        prefix=m[t.prefix],
        application=m[t.application],
        master=m[t.master],
        tenant_permissions=list(m[t.tenant_permissions]),
        expires_on=as_utc(m[t.expires_on]),
        created_at=as_utc(m[t.created_at]) or utcnow(),
    )


def profile_from_row(row: Row[Any]) -> Profile:
    m = row._mapping
    p = profiles.c
    return Profile(
        id=m[p.id],
        tenant=m[p.tenant],
        username=m[p.username],
        email=m[p.email],
        verified=m[p.verified],
        enabled=m[p.enabled],
        roles=list(m[p.roles] or []),
        attributes=dict(m[p.attributes] or {}),
        created_on=as_utc(m[p.created_on]) or utcnow(),
        last_modified=as_utc(m[p.last_modified]) or utcnow(),
    )


# A tenant's name becomes a prefix of object keys and appears in logs and URLs: letters, digits,
# '.', '_' and '-' only, so it can never carry a '/', a space or a control character there.
TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Accounts(EngineBound):
    # --- tenants ------------------------------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        if not TENANT_NAME.fullmatch(name):
            raise BadRequest("A tenant name is 1 to 64 letters, digits, '.', '_' or '-'")
        try:
            with self.transaction() as conn:
                conn.execute(insert(tenants).values(name=name, created_at=utcnow()))
        except IntegrityError:
            raise TenantExists(f"Tenant '{name}' already exists") from None

    def tenant_exists(self, name: str) -> bool:
        with self.reading() as conn:
            return (
                conn.execute(select(tenants.c.id).where(tenants.c.name == name)).first() is not None
            )

    def list_tenants(self) -> list[str]:
        with self.reading() as conn:
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
                insert(access_tokens).values(
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
        t = access_tokens
        with self.reading() as conn:
            row = conn.execute(select(t).where(t.c.id_sha256 == digest)).first()
        # The lookup is by digest; the final comparison is constant-time all the same.
        if row is None or not hmac.compare_digest(row.id_sha256, digest):
            return None
        return token_from_row(row)

    def list_tokens(self) -> list[Token]:
        t = access_tokens
        with self.reading() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at)).all()
        return [token_from_row(r) for r in rows]

    def revoke_token(self, token_id_or_prefix: str) -> int:
        """Revoke by full id, or by the 8-character prefix `token list` shows when it is unique."""
        t = access_tokens
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
        with self.reading() as conn:
            row = conn.execute(select(profiles).where(profiles.c.id == profile_id)).first()
        return profile_from_row(row) if row else None

    def find_profile_by_username(self, tenant: str, username: str) -> Profile | None:
        with self.reading() as conn:
            row = conn.execute(
                select(profiles).where(profiles.c.tenant == tenant, profiles.c.username == username)
            ).first()
        return profile_from_row(row) if row else None
