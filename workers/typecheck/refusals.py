"""The exceptions the checks raise among themselves; inspect() turns them into a Verdict."""

from __future__ import annotations

from core.domain import Reason


class Refused(Exception):
    """A final verdict against the file: a typed reason, the human message beside it, and
    what the content was found to be when a check knows better than libmagic."""

    def __init__(self, code: Reason, message: str, detected: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detected = detected


class Truncated(Exception):
    """A structure walk ran off the end of the file; the raster check names the format."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the file ends at byte {offset}, inside the image structure")


class Corrupt(Exception):
    """A structure walk found bytes that break the format; the raster check names it."""
