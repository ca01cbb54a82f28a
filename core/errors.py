"""The project's own exceptions. SDK and driver errors never cross a package boundary: storage/
and the clients translate them into these, and api/errors.py maps these to HTTP in one place."""

from __future__ import annotations

from core.domain import Reason


class AttachdError(Exception):
    """Base class: something the caller can act on, with a message safe to show a client."""


class ConfigError(AttachdError):
    """A setting is missing or malformed; start-up stops."""


class ServiceUnavailable(AttachdError):
    """A dependency (MinIO, the database, Redis, clamd) cannot be reached right now."""

    def __init__(self, service: str, detail: str = "") -> None:
        self.service = service
        super().__init__(f"{service} is unavailable" + (f": {detail}" if detail else ""))


class NotFound(AttachdError):
    """A record or object does not exist."""


class ObjectMissing(NotFound):
    """An object expected in a bucket is not there."""


class Conflict(AttachdError):
    """A uniqueness rule would be broken (profile, tenant or token exists)."""


class UploadTooLarge(AttachdError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"The upload exceeds the size limit of {limit} bytes")


class UnsupportedType(AttachdError):
    """The file's type is not allowed, or its content contradicts its name: `reason` says which,
    so what counts refusals never reads the message."""

    def __init__(self, reason: Reason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class BadRequest(AttachdError):
    """Malformed input: bad id, malformed multipart, missing part."""


class ScanError(AttachdError):
    """clamd answered with an error for this stream (not a verdict on the file)."""


class ScanLimitExceeded(ScanError):
    """The file is over clamd's limits: it cannot be called clean."""


class AccessDenied(AttachdError):
    """The access token is missing, unknown or expired (Crafter: 403 ACCESS_DENIED)."""


class ActionDenied(AttachdError):
    """The token lacks the action on the tenant (Crafter: 403 ACTION_DENIED)."""


class NoSuchProfile(NotFound):
    def __init__(self, profile_id: str) -> None:
        super().__init__(f'No profile with ID "{profile_id}" found')


class NoSuchAttachment(NotFound):
    """No attachment of that name (or no served version of it): Crafter's `.json` routes answer
    it with an empty attachment instead of an error."""


class NotConfigured(AttachdError):
    """A feature needs a setting that is not set (signed links without ATTACHD_URL_SECRET): 503,
    and no Retry-After, since waiting will not help."""


class NoSuchTenant(NotFound):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"No tenant with name '{tenant}' found")


class InvalidEmail(BadRequest):
    pass


class ProfileExists(Conflict):
    pass


class TenantExists(Conflict):
    pass


class RequestTimeout(BadRequest):
    """The client sent its body too slowly."""


class OffsetMismatch(Conflict):
    """A resumable upload's PATCH is not at the offset the server holds (tus: 409)."""


class UploadLocked(AttachdError):
    """Another request is writing this resumable upload right now (tus: 423)."""


class ChecksumMismatch(BadRequest):
    """A resumable upload's chunk does not match its Upload-Checksum; it was discarded (460)."""


class UploadGone(NotFound):
    """A resumable upload that was terminated or expired, or never existed (404/410)."""


class UploadExpired(UploadGone):
    """A resumable upload past its Upload-Expires, not yet reaped (tus: 410)."""


class IllegalTransition(AttachdError):
    """An upload state change that core.domain.TRANSITIONS does not allow: a bug, never retried."""
