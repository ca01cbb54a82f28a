"""The broker is never a stall: uploads accepted while Redis is away are answered at once and
sent the moment it returns (storage/handoffs.py), not when the reconciler's threshold passes.

A private stack (its own Redis, which the test stops and starts; gunicorn; one Celery worker)
with ATTACHD_RECONCILE_AFTER_SECONDS at 300, as `make up` has it, and no beat: only the
hand-offs can bring these uploads through in time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.settings import Settings
from storage.handoffs import PendingDispatches
from storage.telemetry import Telemetry
from tests.conftest import png_bytes
from tests.integration.pipeline_support import PrivateStack
from tests.integration.test_faults_services import Tenant

UPLOADS = 5
# The target: attached within 30 s of the broker's return.
WITHIN = 30.0


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(settings, tmp_path, reconcile_after_seconds=300)
    try:
        stack.start_clamd()
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.close()


def test_uploads_made_while_redis_is_away_are_attached_soon_after_it_returns(
    stack: PrivateStack,
) -> None:
    tenant = Tenant(stack)
    pending = PendingDispatches(stack.records.engine)
    stack.stop_service("redis")

    ids = []
    for i in range(UPLOADS):
        started = time.monotonic()
        resp = requests.post(
            tenant.url,
            params={"accessTokenId": tenant.token},
            files={"attachment": (f"during-{i}.png", png_bytes(10 + i, 10))},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert time.monotonic() - started < 5  # answered at once, not after the outage
        ids.append(resp.json()["id"])
    assert pending.count() == UPLOADS  # each hand-off kept in the record store

    stack.start_service("redis")
    back = time.monotonic()
    deadline = back + WITHIN
    attached: list[str] = []
    while time.monotonic() < deadline:
        attached = [u.id for _, u in stack.records.attached_files(tenant.profile)]
        if len(attached) == UPLOADS:
            break
        time.sleep(0.2)
    took = time.monotonic() - back
    assert len(attached) == UPLOADS, f"{len(attached)} of {UPLOADS} attached after {took:.1f}s"
    assert pending.count() == 0
    # What the operator is shown: how long the last outage held uploads back, and how many.
    outage = Telemetry.from_url(stack.settings.redis_url).last_outage()
    assert outage is not None and outage.handoffs == UPLOADS
    assert 0 < outage.stalled_seconds < took + 60
    front = requests.get(stack.base_url + "/", timeout=10)
    assert f"{UPLOADS} hand-offs kept, sent on its return" in front.text
