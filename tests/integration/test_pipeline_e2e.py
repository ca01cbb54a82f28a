"""The thin path end to end: a real gunicorn, a real worker, real Redis, MinIO and clamd."""

from __future__ import annotations

import hashlib

import requests

from tests.conftest import png_bytes, png_with_chunk
from tests.integration.conftest import Stack, Tenant
from tests.integration.sdk_support import object_tags


def upload(stack: Stack, tenant: Tenant, name: str, data: bytes) -> requests.Response:
    return requests.post(
        stack.url(f"/api/1/profile/{tenant.profile_id}/uploadAttachment"),
        params={"accessTokenId": tenant.token},
        files={"attachment": (name, data, "application/octet-stream")},
        timeout=30,
    )


def test_png_upload_is_scanned_verified_and_attached(stack: Stack, tenant: Tenant, objects) -> None:
    data = png_bytes(32, 16)
    resp = upload(stack, tenant, "avatar.png", data)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"md5", "contentType", "fileSize", "fileName", "fileSizeBytes", "id"}
    assert body["md5"] == hashlib.md5(data).hexdigest()
    assert body["contentType"] == "image/png"
    assert body["fileName"] == "avatar"
    assert body["fileSizeBytes"] == len(data)
    assert len(body["id"]) == 24

    attachment = stack.records.find_attachment(tenant.profile_id, "avatar")
    assert attachment is not None and attachment.id == body["id"]
    latest = stack.records.latest_upload(attachment.id)
    assert latest is not None
    assert (
        stack.wait_for_state(latest.id, ("attached", "infected", "rejected", "failed"))
        == "attached"
    )

    attached = stack.records.get_upload(latest.id)
    assert attached is not None and attached.object_key is not None
    assert attached.staging_key is None
    assert attached.scanned_at is not None and attached.verified_at is not None
    buckets = stack.settings
    assert objects.exists(buckets.bucket_attachments, attached.object_key)
    assert not objects.exists(buckets.bucket_staging, f"uploads/{latest.id}")
    stored = b"".join(objects.iter_range(buckets.bucket_attachments, attached.object_key))
    assert stored == data


def test_eicar_inside_a_png_is_infected_and_never_attached(
    stack: Stack, tenant: Tenant, objects, eicar: bytes
) -> None:
    data = png_with_chunk(eicar)
    resp = upload(stack, tenant, "infected.png", data)
    assert resp.status_code == 200, resp.text
    attachment = stack.records.find_attachment(tenant.profile_id, "infected")
    assert attachment is not None
    latest = stack.records.latest_upload(attachment.id)
    assert latest is not None
    state = stack.wait_for_state(latest.id, ("attached", "infected", "rejected", "failed"))
    assert state == "infected"
    up = stack.records.get_upload(latest.id)
    assert up is not None
    assert up.signature and "EICAR" in up.signature.upper()
    assert up.object_key is None and up.staging_key is None
    assert stack.records.get_attachment(attachment.id).current_upload_id is None
    assert up.quarantine_key is not None
    tags = object_tags(objects, stack.settings.bucket_quarantine, up.quarantine_key)
    assert tags["result"] == "infected"
    assert not objects.exists(stack.settings.bucket_staging, f"uploads/{latest.id}")
