"""The one way sanitizing fails: the picture cannot be made safe within the limits."""

from __future__ import annotations


class Unsanitizable(Exception):
    """The upload is refused (core.domain.Reason.UNSANITIZABLE) with this message: it passed the
    checks, but serving it raw is never the fallback."""
