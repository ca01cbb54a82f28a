"""What reaches a profile: every allowed type attached; scripts, polyglots, bombs and lies
rejected — through the real API and worker, and, for what the API already refuses at the door,
through the worker alone (defence in depth)."""

from __future__ import annotations

import hashlib
import io
import uuid

import pytest
import requests

from core.tasks import ROUTES, TaskName
from storage.broker import make_celery
from storage.objects import staging_key
from tests.conftest import png_bytes
from tests.integration.conftest import Stack, Tenant
from tests.samples import animated, png_claiming, solid, zip_archive

pytestmark = pytest.mark.integration

TERMINAL = ("attached", "infected", "rejected", "failed")

CLEAN_SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="10" height="10" fill="#08f"/></svg>'
)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(200)
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def upload(stack: Stack, tenant: Tenant, name: str, data: bytes) -> requests.Response:
    return requests.post(
        stack.url(f"/api/1/profile/{tenant.profile_id}/uploadAttachment"),
        params={"accessTokenId": tenant.token},
        files={"attachment": (name, data)},
        timeout=30,
    )


def final(stack: Stack, tenant: Tenant, name: str, data: bytes) -> tuple[str, str | None]:
    resp = upload(stack, tenant, name, data)
    assert resp.status_code == 200, resp.text
    attachment = stack.records.find_attachment(tenant.profile_id, resp.json()["fileName"])
    assert attachment is not None
    latest = stack.records.latest_upload(attachment.id)
    assert latest is not None
    state = stack.wait_for_state(latest.id, TERMINAL)
    up = stack.records.get_upload(latest.id)
    assert up is not None
    if state != "attached":
        # Refused content is never served and leaves nothing staged.
        assert up.object_key is None and up.staging_key is None
        assert stack.records.get_attachment(attachment.id).current_upload_id != up.id
    return state, up.reason if state != "attached" else up.detected_type


@pytest.mark.parametrize(
    ("name", "data", "detected"),
    [
        ("a.png", png_bytes(), "image/png"),
        ("b.JPG", solid("JPEG"), "image/jpeg"),
        ("c.gif", solid("GIF"), "image/gif"),
        ("d.gif", animated("GIF"), "image/gif"),
        ("e.bmp", solid("BMP"), "image/bmp"),
        ("f.tiff", solid("TIFF"), "image/tiff"),
        ("g.svg", CLEAN_SVG, "image/svg+xml"),
    ],
)
def test_every_allowed_type_is_attached(
    stack: Stack, tenant: Tenant, name: str, data: bytes, detected: str
) -> None:
    assert final(stack, tenant, "ok-" + name, data) == ("attached", detected)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("gifscript.gif", b"GIF89a" + b"<script>alert(1)</script>" + bytes(64), ""),
        (
            "onload.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
            "onload",
        ),
        (
            "script.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "script",
        ),
        ("bomb.png", png_claiming(30000, 30000), "pixels"),
        ("truncated.jpg", solid("JPEG", (200, 200))[:-400], ""),
        ("zipped.png", png_bytes() + zip_archive(), "ZIP"),
    ],
)
def test_hostile_content_is_rejected_with_a_reason(
    stack: Stack, tenant: Tenant, name: str, data: bytes, reason: str
) -> None:
    state, why = final(stack, tenant, "bad-" + name, data)
    assert state == "rejected"
    assert why and reason in why


@pytest.mark.parametrize(("name", "data"), [("elf.png", ELF), ("page.gif", HTML)])
def test_lies_about_type_are_refused_at_the_door(
    stack: Stack, tenant: Tenant, objects, name: str, data: bytes
) -> None:
    resp = upload(stack, tenant, "door-" + name, data)
    assert resp.status_code == 415
    assert resp.json()["errorCode"] == "OTHER"
    assert stack.records.find_attachment(tenant.profile_id, "door-" + name.split(".")[0]) is None


@pytest.mark.parametrize(
    ("name", "data", "declared"), [("elf.png", ELF, "image/png"), ("page.gif", HTML, "image/gif")]
)
def test_lies_about_type_are_rejected_by_the_worker_too(
    stack: Stack, tenant: Tenant, objects, name: str, data: bytes, declared: str
) -> None:
    """Staged and recorded as the API would, but skipping its head check: the worker alone must
    refuse it."""
    upload_id = uuid.uuid4().hex
    key = staging_key(upload_id)
    settings = stack.settings
    objects.put_stream(settings.bucket_staging, key, io.BytesIO(data), declared, 5 * 1024**2)
    stack.records.record_upload(
        upload_id=upload_id,
        profile_id=tenant.profile_id,
        file_name="worker-" + name,
        original_name="worker-" + name,
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        declared_type=declared,
        sniffed_type=None,
        staging_key=key,
    )
    celery = make_celery(settings)
    celery.send_task(TaskName.SCAN, args=[upload_id], queue=ROUTES[TaskName.SCAN])
    celery.close()
    assert stack.wait_for_state(upload_id, TERMINAL) == "rejected"
    up = stack.records.get_upload(upload_id)
    assert up is not None and up.reason and "not " + declared in up.reason
    assert not objects.exists(settings.bucket_staging, key)
