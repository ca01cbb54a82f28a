"""Access tokens, as Crafter checks them: a valid token first, then the profile, then the action
on the profile's tenant (an unknown profile is 404 even for a token without the action)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from api.ports import AccountReads
from core.errors import AccessDenied, ActionDenied, NoSuchProfile
from storage.records import Profile, Token, utcnow

MANAGE_PROFILES = "MANAGE_PROFILES"

T = TypeVar("T")
# What one API process keeps at most per cache: far more than its live tokens and profiles.
_CACHE_ENTRIES = 10_000


class Authorizer:
    def __init__(self, records: AccountReads, clock: Callable[[], datetime] = utcnow) -> None:
        self._records = records
        self._clock = clock

    def token(self, token_id: str | None) -> Token:
        if not token_id:
            raise AccessDenied("No access token found in request")
        token = self._records.find_token(token_id)
        # Never echo the token id: it is a bearer secret.
        if token is None:
            raise AccessDenied("The access token is not valid")
        if token.expired(self._clock()):
            raise AccessDenied("The access token has expired")
        return token

    def check_tenant(self, token: Token, tenant: str, action: str = MANAGE_PROFILES) -> None:
        if not token.allows(tenant, action):
            raise ActionDenied(
                f"Application '{token.application}' is not allowed to {action} on tenant '{tenant}'"
            )

    def profile(
        self, token_id: str | None, profile_id: str, action: str = MANAGE_PROFILES
    ) -> Profile:
        token = self.token(token_id)
        profile = self._records.get_profile(profile_id)
        if profile is None:
            raise NoSuchProfile(profile_id)
        self.check_tenant(token, profile.tenant, action)
        return profile


class CachedAccounts:
    """The upload route's token and profile reads, kept `ttl` seconds per API process: two of
    the statements every upload paid (make bench, B2). Only found ones are kept (a token made a
    second ago works at once), and a kept token's expiry is still checked on every use; the
    bound is what a revocation (`attachd token revoke`) or a deleted profile takes to reach
    every API process: ATTACHD_AUTH_CACHE_SECONDS, 5 by default (docs/OPERATIONS.md)."""

    def __init__(
        self, records: AccountReads, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._records = records
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, Token]] = {}
        self._profiles: dict[str, tuple[float, Profile]] = {}

    def find_token(self, token_id: str) -> Token | None:
        return self._read(self._tokens, token_id, self._records.find_token)

    def get_profile(self, profile_id: str) -> Profile | None:
        return self._read(self._profiles, profile_id, self._records.get_profile)

    def _read(
        self, cache: dict[str, tuple[float, T]], key: str, load: Callable[[str], T | None]
    ) -> T | None:
        now = self._clock()
        with self._lock:
            hit = cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = load(key)
        with self._lock:
            if value is None:
                cache.pop(key, None)
            else:
                if len(cache) >= _CACHE_ENTRIES:  # many distinct keys: start again, bounded
                    cache.clear()
                cache[key] = (now, value)
        return value
