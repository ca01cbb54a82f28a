"""What the cases measure: a running API and the stores and services behind it, however it was
started (bench/stack.py for `make bench`, the integration fixtures for the smoke test)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from minio.deleteobjects import DeleteObject

from core.clamd import ClamdClient
from core.settings import Settings
from storage.objects import ObjectStore
from storage.records import RecordStore


@dataclass(frozen=True)
class Account:
    token: str
    profile_id: str


@dataclass
class Target:
    settings: Settings
    base_url: str
    api_pid: int  # the gunicorn master: its children serve the requests
    records: RecordStore
    objects: ObjectStore
    scanner: ClamdClient
    # Runs the default workers for the duration of a `with` (B3); a no-op where they already run.
    workers: Callable[[], AbstractContextManager[object]]
    scratch_bucket: str
    tenant: str
    # True where the default workers run all along (the test stack): B1 and B2 then leave their
    # staged files to the pipeline rather than delete them from under it.
    workers_running: bool = False
    # The pid of the workers' root process while they run (bench/accounting.py counts its CPU);
    # None where it is not known (the test stack's worker belongs to its fixture).
    worker_root: Callable[[], int | None] = lambda: None
    # The other processes `make up` runs beside the workers (Flower, beat), by name, while they
    # run: their CPU is part of what a file costs there.
    companions: Callable[[], dict[str, int]] = dict

    @classmethod
    def connect(
        cls,
        settings: Settings,
        base_url: str,
        api_pid: int,
        workers: Callable[[], AbstractContextManager[object]],
        *,
        workers_running: bool = False,
        worker_root: Callable[[], int | None] = lambda: None,
        companions: Callable[[], dict[str, int]] = dict,
    ) -> Target:
        objects = ObjectStore.from_settings(settings)
        # The direct side of each comparison writes here, never into the pipeline's buckets.
        scratch = f"{settings.bucket_staging}-bench"
        if not objects.client.bucket_exists(scratch):
            objects.client.make_bucket(scratch)
        records = RecordStore.from_url(settings.database_url)
        tenant = "bench-" + secrets.token_hex(3)
        records.create_tenant(tenant)
        return cls(
            settings=settings,
            base_url=base_url,
            api_pid=api_pid,
            records=records,
            objects=objects,
            scanner=ClamdClient(settings.clamd_host, settings.clamd_port, settings.clamd_timeout),
            workers=workers,
            scratch_bucket=scratch,
            tenant=tenant,
            workers_running=workers_running,
            worker_root=worker_root,
            companions=companions,
        )

    def account(self, username: str, tenant: str | None = None) -> Account:
        """A token and a profile in the bench's tenant, or in `tenant` (made if new)."""
        tenant = tenant or self.tenant
        if not self.records.tenant_exists(tenant):
            self.records.create_tenant(tenant)
        token = self.records.create_token(
            "bench", [{"tenant": tenant, "allowedActions": ["MANAGE_PROFILES"]}]
        )
        profile = self.records.create_profile(
            tenant, username, f"{username}@example.com", enabled=True
        )
        return Account(token=token, profile_id=profile.id)

    def upload_url(self, account: Account) -> str:
        return f"{self.base_url}/api/1/profile/{account.profile_id}/uploadAttachment"

    def empty(self, bucket: str, prefix: str = "") -> None:
        """Delete every object under `prefix` (batched: B2 leaves thousands)."""
        client = self.objects.client
        names = [
            DeleteObject(o.object_name)
            for o in client.list_objects(bucket, prefix=prefix, recursive=True)
            if o.object_name is not None
        ]
        for error in client.remove_objects(bucket, names):
            raise RuntimeError(f"could not delete {error.name}: {error.message}")

    def close(self) -> None:
        self.empty(self.scratch_bucket)
        self.objects.client.remove_bucket(self.scratch_bucket)
        self.records.engine.dispose()
