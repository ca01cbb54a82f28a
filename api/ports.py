"""What the API needs of the services behind it, as small structural interfaces.

Only the calls the API really makes. The real RecordStore, ObjectStore and Telemetry satisfy
these as they are (mypy checks it where build_services hands them over); the in-process tests
in tests/api pass fakes of the same shape through create_app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Protocol

from core.policy import TenantPolicy
from storage.objects import Buckets, ObjectInfo
from storage.records import Attachment, Profile, Token, Upload

# A health check of one dependency: returns, or raises AttachdError/OSError when it is down.
Check = Callable[[], None]


class AccountReads(Protocol):
    """What checking a token against a profile reads."""

    def find_token(self, token_id: str) -> Token | None: ...

    def get_profile(self, profile_id: str) -> Profile | None: ...


class RecordUpload(Protocol):
    """Recording a received upload: what both upload routes (multipart and tus) write."""

    def record_upload(
        self,
        *,
        upload_id: str,
        profile_id: str,
        file_name: str,
        original_name: str,
        md5: str,
        sha256: str,
        size: int,
        declared_type: str,
        sniffed_type: str | None,
        staging_key: str,
    ) -> tuple[Attachment, Upload]: ...


class Records(AccountReads, RecordUpload, Protocol):
    """The record store, as the routes and the intake use it."""

    def tenant_exists(self, name: str) -> bool: ...

    def create_profile(
        self,
        tenant: str,
        username: str,
        email: str,
        *,
        enabled: bool,
        password_hash: str | None = None,
        roles: Sequence[str] = (),
        attributes: dict[str, Any] | None = None,
    ) -> Profile: ...

    def find_attachment(self, profile_id: str, name_or_id: str) -> Attachment | None: ...

    def get_upload(self, upload_id: str) -> Upload | None: ...

    def get_attachment(self, attachment_id: str) -> Attachment | None: ...

    def tenant_policy(self, tenant: str) -> TenantPolicy | None: ...

    def attached_files(self, profile_id: str) -> list[tuple[Attachment, Upload]]: ...

    def latest_upload(self, attachment_id: str) -> Upload | None: ...

    def delete_attachment(self, attachment_id: str) -> list[Upload]: ...


class Objects(Protocol):
    """The object store: staging writes at intake, reads and deletes of served files."""

    @property
    def buckets(self) -> Buckets: ...

    def ping(self) -> None: ...

    def put_stream(
        self, bucket: str, key: str, reader: BinaryIO, content_type: str, part_size: int
    ) -> str: ...

    def delete(self, bucket: str, key: str) -> None: ...

    def stat(self, bucket: str, key: str) -> ObjectInfo: ...

    def iter_range(
        self, bucket: str, key: str, offset: int = 0, length: int = 0
    ) -> Iterator[bytes]: ...

    # Renditions made on demand (api/renditions.py): read the served file, put the rendition,
    # delete a version with every rendition beside it.
    def open_reader(self, bucket: str, key: str, size: int) -> BinaryIO: ...

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> None: ...

    def delete_version(self, bucket: str, key: str) -> None: ...


class Leases(Protocol):
    """Short leases shared by the API processes (storage.locks.RedisLeases; LocalLeases within
    one process): a token if the lease was free, None while another holds it."""

    def acquire(self, name: str, ttl_seconds: float) -> str | None: ...

    def release(self, name: str, token: str) -> None: ...


class SendScan(Protocol):
    """Sends an upload that was just recorded to the pipeline's first step, in its tenant's fair
    share (or the bulk lane when the client sent it as bulk). Raises ServiceUnavailable when the
    broker cannot be reached (the reconciler sends it later)."""

    def __call__(self, upload_id: str, tenant: str, /, *, bulk: bool = False) -> None: ...


class Counter(Protocol):
    """A durable counter shared by every API process (Redis in production)."""

    def incr(self, counter: str, *labels: str, amount: int = 1) -> None: ...
