"""Webhook secrets encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256, from the
`cryptography` package), with keys from ATTACHD_WEBHOOK_SECRET_KEY: the first encrypts, every
one decrypts, so a key is rotated by putting the new one first and resealing
(`attachd webhook reseal`). A secret signs (HMAC), so it must be read back, unlike access tokens,
which are stored hashed; a database backup without the key can no longer forge an event."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.errors import ConfigError
from core.webhooks import SECRET_PREFIX

_NO_KEY = (
    "webhook secrets are encrypted at rest: set ATTACHD_WEBHOOK_SECRET_KEY "
    "(make run keeps one in var/webhook-key; docs/OPERATIONS.md says how to make and rotate one)"
)


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys]) if keys else None

    def _need(self) -> MultiFernet:
        if self._fernet is None:
            raise ConfigError(_NO_KEY)
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._need().encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        # A secret as it was stored before encryption (migration 0009 seals them all; a writer
        # of the previous version during a rolling upgrade may still add one).
        if stored.startswith(SECRET_PREFIX):
            return stored
        try:
            return self._need().decrypt(stored.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a webhook secret does not decrypt with any key of ATTACHD_WEBHOOK_SECRET_KEY "
                "(a key removed before `attachd webhook reseal`?)"
            ) from None

    def reseal(self, stored: str) -> str:
        """Under the first key: after a rotation, and for one still stored as it was."""
        if stored.startswith(SECRET_PREFIX):
            return self.seal(stored)
        return self._need().rotate(stored.encode()).decode()
