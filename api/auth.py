"""Access tokens, as Crafter checks them: a valid token first, then the profile, then the action
on the profile's tenant (an unknown profile is 404 even for a token without the action)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from api.ports import AccountReads
from core.errors import AccessDenied, ActionDenied, NoSuchProfile
from storage.records import Profile, Token, utcnow

MANAGE_PROFILES = "MANAGE_PROFILES"


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
