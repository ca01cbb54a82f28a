"""The record store: one object over one engine, as every caller has always used it.

SQLAlchemy Core over SQLite (embedded default) or PostgreSQL. The work lives by aggregate:
storage.engine (engine per URL, transactions, clock), storage.accounts (tenants, tokens, profiles),
storage.uploads (attachments and the upload state machine), storage.policies (tenants' own limits)
and storage.quarantine (review of held files). This module only joins them and re-exports the
names callers import.
"""

from __future__ import annotations

from storage.accounts import Accounts, Profile, Token, token_digest
from storage.engine import as_utc, make_engine, new_object_id, utcnow
from storage.policies import Policies
from storage.quarantine import Quarantine, Quarantined
from storage.uploads import Attachment, Upload, Uploads
from storage.versions import AttachOutcome, Versions

__all__ = [
    "AttachOutcome",
    "Attachment",
    "Profile",
    "Quarantined",
    "RecordStore",
    "Token",
    "Upload",
    "as_utc",
    "make_engine",
    "new_object_id",
    "token_digest",
    "utcnow",
]


class RecordStore(Accounts, Uploads, Versions, Policies, Quarantine):
    """The aggregates (accounts, uploads and their served versions, tenant policies, quarantine)
    on one shared engine (and one connection pool).

    Inheritance rather than composition: the API, the workers, the CLI, the bench and the tests
    all hold one store and call its methods directly (`records.find_token`, `records.transition`),
    and the aggregates have no state but the engine, so a union of their methods is the whole
    interface; composition would add a delegating method per call or change every caller. A
    caller that needs only one of them can be typed against it (`Accounts`, `Uploads`, …) or a
    Protocol of the few methods it uses."""

    @classmethod
    def from_url(cls, url: str) -> RecordStore:
        return cls(make_engine(url))
