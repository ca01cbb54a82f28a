"""Signed download links: an HMAC over the upload id, the expiry and the rendition, so a browser
can show a private file with `<img src>` without holding an access token.

The link names one upload (one served version), not the attachment's name: a replaced version's
link stops working rather than silently showing the new file. Keys come from ATTACHD_URL_SECRET;
the first signs, every one verifies, so a key can be rotated without breaking links in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from api.params import MalformedNumber, whole_number
from core.errors import AccessDenied, NotConfigured

EXPIRES = "expires"
SIZE = "size"
SIGNATURE = "sig"


@dataclass(frozen=True)
class Link:
    upload_id: str
    expires: int  # epoch seconds
    size: int | None = None  # a rendition's longest side, or None for the file itself

    def message(self) -> bytes:
        # Versioned and newline-separated: no field can run into the next one.
        return f"attachd-link-v1\n{self.upload_id}\n{self.expires}\n{self.size or ''}".encode()


def _mac(key: str, link: Link) -> str:
    digest = hmac.new(key.encode(), link.message(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Signer:
    def __init__(self, keys: tuple[str, ...], clock: Callable[[], float] | None = None) -> None:
        self._keys = keys
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())

    def _need_keys(self) -> None:
        if not self._keys:
            raise NotConfigured(
                "Signed links are not configured: set ATTACHD_URL_SECRET "
                "(make run generates one in var/url-secret)"
            )

    def now(self) -> int:
        return int(self._clock())

    def sign(self, link: Link) -> str:
        self._need_keys()
        return _mac(self._keys[0], link)

    def query(self, link: Link) -> dict[str, str]:
        """The query parameters of a link to `link`."""
        params = {EXPIRES: str(link.expires)}
        if link.size is not None:
            params[SIZE] = str(link.size)
        params[SIGNATURE] = self.sign(link)
        return params

    def verify(
        self, upload_id: str, expires: str | None, size: str | None, signature: str | None
    ) -> Link:
        """The link these parameters sign, or AccessDenied: altered (or unsigned) first, then
        expired, so a forger learns nothing from the answer."""
        self._need_keys()
        altered = AccessDenied("The link is not valid: its signature does not match")
        # ASCII only: compare_digest refuses non-ASCII str (a 500 found by Schemathesis), and a
        # signature, an expiry or a size is never anything else.
        if not expires or not signature or not signature.isascii():
            raise altered
        # A malformed number is an altered link too: the server wrote the link, a client never
        # composes one, and a 403 tells a forger no more than any other refusal.
        try:
            link = Link(
                upload_id,
                whole_number(expires, EXPIRES),
                whole_number(size, SIZE) if size is not None else None,
            )
        except MalformedNumber:
            raise altered from None
        given = signature.encode()
        if not any(hmac.compare_digest(_mac(key, link).encode(), given) for key in self._keys):
            raise altered
        if link.expires <= self.now():
            raise AccessDenied("The link has expired")
        return link
