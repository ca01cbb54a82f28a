"""Fair share between tenants on the real stack (gunicorn, Redis, MinIO, clamd, a Celery worker):
one tenant's burst waits behind another tenant's single upload, and bulk work behind everyone's.

The uploads are all made while no worker runs, then one worker with one process takes the
queue: the order it attaches them in is the order the broker hands them out, which is what the
lanes decide (storage/fairshare.py, core.tasks.Lane)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from core.settings import Settings
from storage.fairshare import FairShare
from storage.records import Upload
from storage.telemetry import Telemetry
from tests.conftest import png_bytes
from tests.integration.ops_support import wait_consumed
from tests.integration.pipeline_support import PrivateStack
from tests.integration.test_faults_services import Tenant

BURST = 60


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(settings, tmp_path)
    try:
        stack.start_clamd()
        stack.start_api()
        yield stack
    finally:
        stack.close()


def upload(tenant: Tenant, name: str, headers: dict[str, str] | None = None) -> str:
    resp = requests.post(
        tenant.url,
        params={"accessTokenId": tenant.token},
        files={"attachment": (name, png_bytes(16, 16))},
        headers=headers or {},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def uploads_of(stack: PrivateStack, tenant: Tenant) -> list[Upload]:
    return [u for _, u in stack.records.attached_files(tenant.profile)]


def test_a_burst_waits_behind_another_tenants_single_upload_and_bulk_behind_all(
    stack: PrivateStack,
) -> None:
    importer, burst, person = Tenant(stack), Tenant(stack), Tenant(stack)
    # First of all, an import sent as bulk: it waits behind everything that comes after it.
    upload(importer, "imported.png", {"X-Attachd-Lane": "bulk"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: upload(burst, f"burst-{i}.png"), range(BURST)))
    upload(person, "avatar.png")  # one picture, after the whole burst

    stack.start_worker(concurrency=1)
    wait_consumed(stack.settings.redis_url, timeout=180)

    everything = sorted(
        [*uploads_of(stack, importer), *uploads_of(stack, burst), *uploads_of(stack, person)],
        key=lambda u: u.finished_at or u.updated_at,
    )
    assert len(everything) == BURST + 2 and all(u.state == "attached" for u in everything)
    order = [u.original_name for u in everything]
    # In one FIFO the person's picture would be attached 62nd. In the first lane it waits only
    # behind the burst's first uploads (ATTACHD_FAIR_INTERACTIVE of them) and the message the
    # worker had already taken.
    assert order.index("avatar.png") <= stack.settings.fair_interactive + 1, order
    assert order[-1] == "imported.png", order

    # Every scan counted out as it ended: nothing left in flight for either tenant.
    fair = FairShare(Telemetry.from_url(stack.settings.redis_url), 8, 64)
    assert fair.in_flight(burst.tenant) == 0 and fair.in_flight(person.tenant) == 0
