"""The in-process API layer: the real app from create_app, with typed fakes of the ports in
api/ports.py behind it. No Redis, MinIO or database: a resource change is tested in milliseconds,
and the integration tests (tests/integration) still run the same routes against real services."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pytest
from falcon import testing

from api.app import Services, create_app
from api.ports import Check
from core.domain import State
from core.errors import ObjectMissing, ProfileExists, ServiceUnavailable
from core.policy import TenantPolicy
from core.settings import Settings
from storage.objects import Buckets, ObjectInfo
from storage.records import Attachment, Profile, Token, Upload, new_object_id

API = "/api/1/profile"
MANAGE = {"allowedActions": ["MANAGE_PROFILES"]}
URL_SECRET = "in-process-tests-url-secret-0123456789"


def _now() -> datetime:
    return datetime.now(UTC)


class FakeRecords:
    """Tokens, profiles, attachments and uploads in dicts, with the store's lookup rules."""

    def __init__(self) -> None:
        self.tenants: set[str] = set()
        self.tokens: dict[str, Token] = {}
        self.profiles: dict[str, Profile] = {}
        self.attachments: dict[str, Attachment] = {}
        self.uploads: dict[str, Upload] = {}
        self.policies: dict[str, TenantPolicy] = {}
        # How often the policy was read: the intake must not query it per upload.
        self.policy_reads = 0

    # --- set-up helpers of the tests (not part of the port) ---

    def add_token(self, tenant: str) -> str:
        token_id = secrets.token_hex(16)
        self.tokens[token_id] = Token(
            prefix=token_id[:8],
            application="tests",
            master=False,
            tenant_permissions=[{"tenant": tenant, **MANAGE}],
            expires_on=None,
            created_at=_now(),
        )
        return token_id

    def add_profile(self, tenant: str) -> str:
        self.tenants.add(tenant)
        return self.create_profile(
            tenant, f"u-{secrets.token_hex(3)}", "u@example.com", enabled=True
        ).id

    def mark_attached(self, upload_id: str, object_key: str) -> None:
        upload = self.uploads[upload_id]
        self.uploads[upload_id] = replace(
            upload,
            state=State.ATTACHED,
            staging_key=None,
            object_key=object_key,
            finished_at=_now(),
        )
        attachment = self.attachments[upload.attachment_id]
        self.attachments[attachment.id] = replace(attachment, current_upload_id=upload_id)

    # --- the port ---

    def find_token(self, token_id: str) -> Token | None:
        return self.tokens.get(token_id)

    def get_profile(self, profile_id: str) -> Profile | None:
        return self.profiles.get(profile_id)

    def tenant_exists(self, name: str) -> bool:
        return name in self.tenants

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
    ) -> Profile:
        if any(p.tenant == tenant and p.username == username for p in self.profiles.values()):
            raise ProfileExists(f"A profile with username '{username}' already exists")
        now = _now()
        profile = Profile(
            id=new_object_id(),
            tenant=tenant,
            username=username,
            email=email,
            verified=False,
            enabled=enabled,
            roles=list(roles),
            attributes=attributes or {},
            created_on=now,
            last_modified=now,
        )
        self.profiles[profile.id] = profile
        return profile

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
    ) -> tuple[Attachment, Upload]:
        now = _now()
        attachment = next(
            (
                a
                for a in self.attachments.values()
                if a.profile_id == profile_id and a.file_name == file_name
            ),
            None,
        )
        if attachment is None:
            attachment = Attachment(new_object_id(), profile_id, file_name, None, now)
            self.attachments[attachment.id] = attachment
        upload = Upload(
            seq=len(self.uploads) + 1,
            id=upload_id,
            attachment_id=attachment.id,
            state=State.STAGED,
            reason=None,
            original_name=original_name,
            md5=md5,
            sha256=sha256,
            size=size,
            declared_type=declared_type,
            sniffed_type=sniffed_type,
            detected_type=None,
            staging_key=staging_key,
            object_key=None,
            quarantine_key=None,
            signature=None,
            engine_version=None,
            signature_version=None,
            rescan_queued_version=None,
            attempts=0,
            resend_after=None,
            created_at=now,
            updated_at=now,
            scanned_at=None,
            verified_at=None,
            finished_at=None,
        )
        self.uploads[upload.id] = upload
        return attachment, upload

    def find_attachment(self, profile_id: str, name_or_id: str) -> Attachment | None:
        mine = [a for a in self.attachments.values() if a.profile_id == profile_id]
        # A name that happens to equal another attachment's id: the name wins, as in the store.
        by_name = [a for a in mine if a.file_name == name_or_id]
        by_id = [a for a in mine if a.id == name_or_id]
        found = by_name or by_id
        return found[0] if found else None

    def get_upload(self, upload_id: str) -> Upload | None:
        return self.uploads.get(upload_id)

    def get_attachment(self, attachment_id: str) -> Attachment | None:
        return self.attachments.get(attachment_id)

    def tenant_policy(self, tenant: str) -> TenantPolicy | None:
        self.policy_reads += 1
        return self.policies.get(tenant)

    def attached_files(self, profile_id: str) -> list[tuple[Attachment, Upload]]:
        return [
            (a, self.uploads[a.current_upload_id])
            for a in self.attachments.values()
            if a.profile_id == profile_id and a.current_upload_id
        ]

    def latest_upload(self, attachment_id: str) -> Upload | None:
        mine = [u for u in self.uploads.values() if u.attachment_id == attachment_id]
        return max(mine, key=lambda u: u.seq, default=None)

    def delete_attachment(self, attachment_id: str) -> list[Upload]:
        gone = [u for u in self.uploads.values() if u.attachment_id == attachment_id]
        for upload in gone:
            del self.uploads[upload.id]
        self.attachments.pop(attachment_id, None)
        return gone


class FakeObjects:
    """Buckets as dicts of bytes; put_stream reads its reader to the end, as the real one does."""

    def __init__(self, buckets: Buckets) -> None:
        self._buckets = buckets
        self.data: dict[tuple[str, str], bytes] = {}
        self.metadata: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.puts: list[str] = []  # keys put by put_bytes (renditions), in order

    @property
    def buckets(self) -> Buckets:
        return self._buckets

    def ping(self) -> None:
        pass

    def put_stream(
        self, bucket: str, key: str, reader: BinaryIO, content_type: str, part_size: int
    ) -> str:
        chunks = []
        while chunk := reader.read(part_size):
            chunks.append(chunk)
        self.data[(bucket, key)] = b"".join(chunks)
        return "etag"

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> None:
        self.data[(bucket, key)] = data
        self.metadata[(bucket, key)] = (content_type, dict(metadata))
        self.puts.append(key)

    def delete(self, bucket: str, key: str) -> None:
        self.data.pop((bucket, key), None)

    def delete_version(self, bucket: str, key: str) -> None:
        for b, k in list(self.data):
            if b == bucket and (k == key or k.startswith(f"{key}@")):
                self.delete(b, k)

    def open_reader(self, bucket: str, key: str, size: int) -> BinaryIO:
        self.stat(bucket, key)
        return io.BytesIO(self.data[(bucket, key)][:size])

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        if (bucket, key) not in self.data:
            raise ObjectMissing(f"{bucket}/{key}")
        content_type, metadata = self.metadata.get((bucket, key), ("application/octet-stream", {}))
        return ObjectInfo(len(self.data[(bucket, key)]), "etag", content_type, None, metadata)

    def iter_range(
        self, bucket: str, key: str, offset: int = 0, length: int = 0
    ) -> Iterator[bytes]:
        self.stat(bucket, key)
        data = self.data[(bucket, key)]
        yield data[offset : offset + length] if length else data[offset:]

    def keys(self, bucket: str) -> set[str]:
        return {k for b, k in self.data if b == bucket}


@dataclass
class RecordingSender:
    """The task sender: remembers the upload ids it was asked to scan."""

    sent: list[str] = field(default_factory=list)
    down: bool = False

    def __call__(self, upload_id: str, /) -> None:
        if self.down:
            raise ServiceUnavailable("redis", "test")
        self.sent.append(upload_id)


@dataclass
class RecordingCounter:
    counts: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)

    def incr(self, counter: str, *labels: str, amount: int = 1) -> None:
        key = (counter, tuple(str(label) for label in labels))
        self.counts[key] = self.counts.get(key, 0) + amount


@dataclass
class World:
    """One app and what stands behind it, with an account ready to use."""

    settings: Settings
    records: FakeRecords
    objects: FakeObjects
    sender: RecordingSender
    counter: RecordingCounter
    checks: dict[str, Check]
    client: testing.TestClient
    tenant: str
    token: str
    profile_id: str

    def path(self, rest: str = "", profile_id: str | None = None) -> str:
        return f"{API}/{profile_id or self.profile_id}{rest}"

    def upload(
        self, name: str, data: bytes, *, token: str | None = None, **kwargs: Any
    ) -> testing.Result:
        body, content_type = multipart([("attachment", name, data)])
        return self.client.simulate_post(
            self.path("/uploadAttachment", kwargs.pop("profile_id", None)),
            params={"accessTokenId": self.token if token is None else token},
            body=body,
            headers={"Content-Type": content_type},
            **kwargs,
        )

    def get(self, rest: str, **kwargs: Any) -> testing.Result:
        return self.client.simulate_get(
            self.path(rest), params={"accessTokenId": self.token}, **kwargs
        )

    def attached(self, name: str, data: bytes) -> dict[str, Any]:
        """Uploads `data` and moves it to attached, as the pipeline would have."""
        resp = self.upload(name, data)
        assert resp.status_code == 200, resp.text
        upload_id = self.sender.sent[-1]
        staged = self.records.uploads[upload_id].staging_key
        assert staged is not None
        key = f"{self.tenant}/{upload_id}"
        bucket = self.settings.bucket_attachments
        self.objects.data[(bucket, key)] = self.objects.data.pop(
            (self.settings.bucket_staging, staged)
        )
        self.records.mark_attached(upload_id, key)
        result: dict[str, Any] = resp.json
        return result


def multipart(parts: Sequence[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name or None, value) parts, in this order."""
    boundary = "attachd-" + secrets.token_hex(8)
    out = io.BytesIO()
    for name, filename, value in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _healthy() -> None:
    pass


@pytest.fixture
def world() -> World:
    settings = Settings(max_upload_size=64 * 1024, url_secret=(URL_SECRET,))
    records = FakeRecords()
    objects = FakeObjects(
        Buckets(settings.bucket_staging, settings.bucket_attachments, settings.bucket_quarantine)
    )
    sender = RecordingSender()
    counter = RecordingCounter()
    checks: dict[str, Check] = {"database": _healthy, "minio": _healthy}
    # Services is typed with the ports: mypy checks that each fake fits its port.
    services = Services(
        records=records, objects=objects, enqueue=sender, checks=checks, refusals=counter
    )
    tenant = "t-" + secrets.token_hex(3)
    profile_id = records.add_profile(tenant)
    token = records.add_token(tenant)
    return World(
        settings=settings,
        records=records,
        objects=objects,
        sender=sender,
        counter=counter,
        checks=checks,
        client=testing.TestClient(create_app(settings, services)),
        tenant=tenant,
        token=token,
        profile_id=profile_id,
    )
