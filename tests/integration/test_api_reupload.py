"""Uploading a name that already exists: the id stays, the old version is served until the new
one is attached, and stays if the new one is infected or rejected."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from api.app import build_services
from storage.objects import ObjectStore
from tests.conftest import png_bytes, png_with_chunk
from tests.integration.api_support import (
    Account,
    app_client,
    get,
    jpeg_bytes,
    latest_upload,
    md5,
    multipart_body,
    new_account,
    upload,
    upload_attached,
    wait_until_final,
)
from tests.integration.conftest import Stack

OLD = png_bytes(16, 16, (0, 200, 0))
NEW = png_bytes(24, 24, (0, 0, 200))


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def served(stack: Stack, account: Account, name: str) -> tuple[bytes, dict[str, Any]]:
    download = get(stack.base_url, account, f"/attachment/{name}")
    assert download.status_code == 200, download.text
    details = get(stack.base_url, account, f"/attachment/{name}/details").json()
    return download.content, details


def test_the_old_version_is_served_until_the_new_one_is_attached(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    first = upload_attached(stack, account, "avatar.png", OLD)
    old_upload = latest_upload(stack, account, "avatar")

    # The new version is received by the real app, but held back from the pipeline, so the
    # moment between "accepted" and "attached" can be looked at.
    held: list[str] = []
    real = build_services(stack.settings)

    def hold(upload_id: str, tenant: str, /, *, bulk: bool = False) -> None:
        held.append(upload_id)

    with app_client(stack.settings, replace(real, enqueue=hold)) as client:
        body, content_type = multipart_body("avatar.png", NEW)
        resp = client.simulate_post(
            account.path("/uploadAttachment"),
            params={"accessTokenId": account.token},
            body=body,
            headers={"Content-Type": content_type},
        )
    assert resp.status_code == 200, resp.text
    assert resp.json["id"] == first["id"]
    assert resp.json["md5"] == md5(NEW)
    assert len(held) == 1

    content, details = served(stack, account, "avatar")
    assert (content, details) == (OLD, first)
    assert get(stack.base_url, account, "/attachments").json() == [first]
    status = get(stack.base_url, account, "/attachment/avatar/status").json()
    assert status["state"] == "staged"
    assert (status["served"], status["servedUploadId"]) == (False, old_upload.id)

    real.enqueue(held[0], account.tenant)  # now send it to the worker
    assert stack.wait_for_state(held[0], ("attached", "infected", "rejected", "failed")) == (
        "attached"
    )
    content, details = served(stack, account, "avatar")
    assert content == NEW
    assert (details["id"], details["md5"], details["fileSizeBytes"]) == (
        first["id"],
        md5(NEW),
        len(NEW),
    )
    # The replaced version is history: no longer served, its object gone.
    replaced = stack.records.get_upload(old_upload.id)
    assert replaced is not None and replaced.state == "superseded"
    assert old_upload.object_key is not None
    assert not objects.exists(stack.settings.bucket_attachments, old_upload.object_key)


@pytest.mark.parametrize("outcome", ["infected", "rejected"])
def test_a_new_version_that_fails_leaves_the_old_one_served(
    stack: Stack, account: Account, eicar: bytes, outcome: str
) -> None:
    first = upload_attached(stack, account, "doc.png", OLD)
    bad = png_with_chunk(eicar) if outcome == "infected" else NEW[:60]
    resp = upload(stack.base_url, account, "doc.png", bad)
    assert resp.status_code == 200
    assert resp.json()["id"] == first["id"]
    assert wait_until_final(stack, account, "doc").state == outcome

    content, details = served(stack, account, "doc")
    assert (content, details) == (OLD, first)
    assert get(stack.base_url, account, "/attachments").json() == [first]
    status = get(stack.base_url, account, "/attachment/doc/status").json()
    assert status["state"] == outcome and status["served"] is False
    assert status["servedUploadId"] is not None


def test_a_new_extension_replaces_the_file_under_the_same_id(
    stack: Stack, account: Account
) -> None:
    first = upload_attached(stack, account, "picture1.png", OLD)
    jpeg = jpeg_bytes(12, 12)
    second = upload_attached(stack, account, "picture1.jpg", jpeg)
    assert second["id"] == first["id"]
    content, details = served(stack, account, "picture1")
    assert content == jpeg
    assert details["contentType"] == "image/jpeg"
    download = get(stack.base_url, account, "/attachment/picture1")
    assert download.headers["Content-Type"] == "image/jpeg"
    assert "picture1.jpg" in download.headers["Content-Disposition"]
    assert len(get(stack.base_url, account, "/attachments").json()) == 1
