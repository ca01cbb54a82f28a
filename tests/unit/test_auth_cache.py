"""The upload route's short cache of token and profile reads (api/auth.py, CachedAccounts): what
it keeps, for how long, and what it never keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.auth import Authorizer, CachedAccounts
from core.errors import AccessDenied
from storage.records import Profile, Token

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def token(expires: datetime | None = None) -> Token:
    rights = [{"tenant": "t", "allowedActions": ["MANAGE_PROFILES"]}]
    return Token("abcd1234", "app", False, rights, expires, NOW)


class Accounts:
    """The store's account reads, counting them."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.profiles: dict[str, Profile] = {}
        self.reads = 0

    def find_token(self, token_id: str) -> Token | None:
        self.reads += 1
        return self.tokens.get(token_id)

    def get_profile(self, profile_id: str) -> Profile | None:
        self.reads += 1
        return self.profiles.get(profile_id)


def test_a_revoked_token_works_at_most_ttl_seconds_longer() -> None:
    store, clock = Accounts(), [0.0]
    store.tokens["tok"] = token()
    cached = CachedAccounts(store, ttl=5, clock=lambda: clock[0])
    assert cached.find_token("tok") is not None
    del store.tokens["tok"]  # revoked
    clock[0] = 4.9
    assert cached.find_token("tok") is not None and store.reads == 1  # within the bound
    clock[0] = 5.0
    assert cached.find_token("tok") is None and store.reads == 2  # past it: read, and gone


def test_what_is_not_found_is_never_kept() -> None:
    store = Accounts()
    cached = CachedAccounts(store, ttl=5, clock=lambda: 0.0)
    assert cached.find_token("new") is None
    store.tokens["new"] = token()  # created a moment later: works at once
    assert cached.find_token("new") is not None and store.reads == 2


def test_a_kept_tokens_expiry_is_still_checked_on_every_use() -> None:
    store = Accounts()
    store.tokens["tok"] = token(expires=NOW + timedelta(seconds=1))
    now = [NOW]
    auth = Authorizer(CachedAccounts(store, ttl=60, clock=lambda: 0.0), clock=lambda: now[0])
    auth.token("tok")
    now[0] = NOW + timedelta(seconds=2)
    with pytest.raises(AccessDenied, match="expired"):
        auth.token("tok")
    assert store.reads == 1
