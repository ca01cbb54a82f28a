"""Fault injection against a private copy of the whole stack: the API killed mid-upload, MinIO
stopped during an upload and during attach, Redis restarted empty, the database unreachable for
a while. Each time: the client gets a clear answer (success or an error), every accepted upload
reaches a terminal state, nothing is marked clean without a scan, nothing is duplicated, nothing
is left behind."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.domain import State
from core.settings import Settings
from storage.records import Upload
from tests.conftest import png_bytes
from tests.integration.ops_support import task_retries, wait_retried
from tests.integration.pipeline_support import PrivateStack

pytestmark = pytest.mark.integration


def start(stack: PrivateStack) -> PrivateStack:
    stack.start_clamd()
    stack.start_api()
    stack.start_worker()
    return stack


@pytest.fixture
def full(settings: Settings, tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(
        settings, tmp_path, own=("redis", "minio"), max_upload_size=64 * 1024 * 1024
    )
    try:
        yield start(stack)
    finally:
        stack.close()


@pytest.fixture
def on_postgres(settings: Settings, tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(settings, tmp_path, own=("postgres",))
    try:
        yield start(stack)
    finally:
        stack.close()


class Tenant:
    def __init__(self, stack: PrivateStack) -> None:
        name = "f-" + os.urandom(3).hex()
        stack.records.create_tenant(name)
        self.tenant = name
        self.token = stack.records.create_token(
            "faults", [{"tenant": name, "allowedActions": ["MANAGE_PROFILES"]}]
        )
        self.profile = stack.records.create_profile(name, "eve", "eve@example.com", enabled=True).id
        self.url = f"{stack.base_url}/api/1/profile/{self.profile}/uploadAttachment"


def post(tenant: Tenant, name: str, body: object, timeout: float = 30) -> requests.Response:
    return requests.post(
        tenant.url,
        params={"accessTokenId": tenant.token},
        files={"attachment": (name, body)},
        timeout=timeout,
    )


def slow_body(
    total: int, progress: dict[str, object], chunk: int = 256 * 1024, pause: float = 0.02
) -> Iterator[bytes]:
    """A multipart body we stream ourselves, slowly, so a fault can land in the middle of it;
    progress["sent"] counts the file's bytes handed to the connection so far."""
    boundary = "faultboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="attachment"; '
        f'filename="slow.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    yield head
    image = png_bytes()
    yield image[:-12]  # all but the IEND chunk: the upload never completes anyway
    sent = 0
    while sent < total:
        yield b"\0" * chunk
        sent += chunk
        progress["sent"] = sent
        time.sleep(pause)
    yield f"\r\n--{boundary}--\r\n".encode()


def stream_in_background(tenant: Tenant, total: int) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["response"] = requests.post(
                tenant.url,
                params={"accessTokenId": tenant.token},
                data=slow_body(total, outcome),
                headers={"Content-Type": "multipart/form-data; boundary=faultboundary"},
                timeout=60,
            )
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_mid_upload(stack: PrivateStack, outcome: dict[str, object], total: int) -> int:
    """Until the client has sent more than one MinIO part of the file (so parts are in MinIO)
    but not all of it; returns how much it had sent."""
    enough = stack.settings.upload_part_size + 2 * 1024 * 1024
    deadline = time.monotonic() + 30
    while int(str(outcome.get("sent", 0))) < enough:
        assert "response" not in outcome and "error" not in outcome, outcome
        assert time.monotonic() < deadline, "the upload never got under way"
        time.sleep(0.01)
    sent = int(str(outcome["sent"]))
    assert sent < total, "the whole body was sent: the fault would not be mid-upload"
    return sent


def staged_keys(stack: PrivateStack) -> list[str]:
    return [k for k, _ in stack.objects.list_keys(stack.settings.bucket_staging)]


def all_uploads(stack: PrivateStack) -> list[Upload]:
    return [u for state in State for u in stack.records.uploads_in_state(state)]


def test_api_killed_mid_upload_leaves_nothing_and_a_retry_succeeds(full: PrivateStack) -> None:
    tenant = Tenant(full)
    total = 32 * 1024 * 1024
    thread, outcome = stream_in_background(tenant, total=total)
    wait_mid_upload(full, outcome, total)
    full.kill_api()
    thread.join(timeout=60)
    assert "error" in outcome, f"the client must see the connection die, got {outcome}"
    # Mid-upload indeed: the client never got to send the rest.
    assert int(str(outcome["sent"])) < total, outcome
    assert staged_keys(full) == []  # an incomplete multipart upload is not an object
    assert all_uploads(full) == []

    full.start_api()
    resp = post(tenant, "retry.png", png_bytes())
    assert resp.status_code == 200, resp.text
    [upload] = all_uploads(full)
    assert full.wait(upload.id) == "attached"


def test_minio_stopped_during_an_upload_is_a_503_and_nothing_is_recorded(
    full: PrivateStack,
) -> None:
    tenant = Tenant(full)
    total = 32 * 1024 * 1024
    thread, outcome = stream_in_background(tenant, total=total)
    wait_mid_upload(full, outcome, total)
    full.stop_service("minio")
    thread.join(timeout=60)
    full.start_service("minio")
    response = outcome.get("response")
    if response is not None:  # the API answered before the connection closed
        assert isinstance(response, requests.Response)
        assert response.status_code == 503, response.text
        assert response.json()["errorCode"] == "OTHER"
        assert response.headers["Retry-After"]
    else:
        assert "error" in outcome
    assert all_uploads(full) == []
    assert staged_keys(full) == []


def test_minio_stopped_during_attach_uploads_finish_when_it_is_back(full: PrivateStack) -> None:
    tenant = Tenant(full)
    full.stop_worker()
    for i in range(4):
        resp = post(tenant, f"m{i}.png", png_bytes(10 + i, 10))
        assert resp.status_code == 200, resp.text
    ids = [u.id for u in full.records.uploads_in_state("staged")]
    assert len(ids) == 4
    full.stop_service("minio")
    retried = task_retries(full.settings.redis_url, "scan")
    full.start_worker()
    # The scans fail to read their files and retry with backoff: seen in the retry counter, one
    # retry at least per upload, not assumed after a sleep.
    wait_retried(full.settings.redis_url, "scan", retried + len(ids) - 1)
    states = {full.records.get_upload(i).state for i in ids}
    assert states <= {"staged", "scanning"}, states
    full.start_service("minio")
    assert [full.wait(i, timeout=120) for i in ids] == ["attached"] * 4
    attached = [full.records.get_upload(i) for i in ids]
    keys = sorted(k for k, _ in full.objects.list_keys(full.settings.bucket_attachments))
    assert keys == sorted(u.object_key for u in attached if u)
    # The attach step deletes the staged copy just after it commits `attached`: give that last
    # delete its moment, then nothing may be left.
    deadline = time.monotonic() + 15
    while staged_keys(full) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert staged_keys(full) == []


def test_redis_restarted_empty_uploads_finish_after_reconcile(full: PrivateStack) -> None:
    tenant = Tenant(full)
    full.stop_worker()
    for i in range(5):
        assert post(tenant, f"r{i}.png", png_bytes(12, 12 + i)).status_code == 200
    full.stop_service("redis")  # no persistence: the queue is gone
    # While Redis is down the API still accepts uploads: the record is the truth.
    resp = post(tenant, "while-down.png", png_bytes())
    assert resp.status_code == 200, resp.text
    ids = [u.id for u in full.records.uploads_in_state("staged")]
    assert len(ids) == 6
    attachment = full.records.find_attachment(tenant.profile, "while-down")
    assert attachment is not None
    kept = full.records.latest_upload(attachment.id)
    assert kept is not None
    full.start_service("redis")
    full.start_worker()
    # The upload made while Redis was down had its hand-off kept (storage/handoffs.py): it is
    # sent the moment Redis answers, without the reconciler.
    assert full.wait(kept.id) == "attached"
    # The five whose messages the empty Redis lost nobody knew of: the reconciler finds them.
    assert full.works.upkeep.reconcile()["resent"] == 5
    assert [full.wait(i) for i in ids] == ["attached"] * 6


def test_database_unreachable_for_a_while(on_postgres: PrivateStack) -> None:
    stack = on_postgres
    tenant = Tenant(stack)
    stack.stop_worker()
    resp = post(tenant, "before.png", png_bytes())
    assert resp.status_code == 200, resp.text
    [pending] = stack.records.uploads_in_state("staged")
    stack.stop_service("postgres")
    refused = post(tenant, "during.png", png_bytes(9, 9))
    assert refused.status_code == 503, refused.text
    assert refused.json()["errorCode"] == "OTHER" and refused.headers["Retry-After"]
    retried = task_retries(stack.settings.redis_url, "scan")
    stack.start_worker()  # its tasks cannot read the record: they retry
    wait_retried(stack.settings.redis_url, "scan", retried)
    stack.start_service("postgres")
    assert stack.wait(pending.id, timeout=120) == "attached"
    states = stack.records.count_by_state()
    assert states["attached"] == 1 and sum(states.values()) == 1
    # The refused upload's staged object was removed when its record could not be written.
    assert staged_keys(stack) == []
