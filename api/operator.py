"""Operator access to the dashboard and the metrics: HTTP basic with the operator's credentials
from settings, or a bearer token for Prometheus. Crafter's access tokens play no part here: they
grant rights on tenants, not on the service."""

from __future__ import annotations

import base64
import binascii
import hmac

import falcon

from core.settings import Settings

REALM = 'Basic realm="attachd operators", charset="UTF-8"'


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class OperatorAuth:
    def __init__(self, user: str, password: str, bearer_token: str = "") -> None:
        self.user = user
        self.password = password
        self.bearer_token = bearer_token

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorAuth:
        return cls(settings.ops_user, settings.ops_password, settings.metrics_token)

    def require(self, req: falcon.Request, *, bearer: bool = False) -> None:
        """Raise 401 unless the request carries the operator's credentials (or, where `bearer`,
        the metrics token); 403 when no credentials are configured at all."""
        header = req.get_header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if bearer and self.bearer_token and scheme.lower() == "bearer":
            if _same(value, self.bearer_token):
                return
        elif self.password and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = ""
            # Both compared, always: the time taken says nothing about which one was wrong.
            if _same(user, self.user) & _same(password, self.password):
                return
        if not self.password and not (bearer and self.bearer_token):
            raise falcon.HTTPForbidden(
                title="Operator access is not configured",
                description="Set ATTACHD_OPS_PASSWORD to open the dashboard and the metrics.",
            )
        raise falcon.HTTPUnauthorized(
            title="Operator credentials required",
            description="Authenticate with the operator's user and password.",
            challenges=[REALM],
        )
