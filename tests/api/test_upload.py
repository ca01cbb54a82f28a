"""The upload route in-process: what it answers, what it stores and sends, what it refuses.

What the real stack checks as well or better (Crafter's Java client's body, an unknown profile,
names and types) is in tests/integration/test_api_uploads.py only; these cases see what only the
fakes show: the task sent, the bytes staged, the refusals counted."""

from __future__ import annotations

import hashlib

from tests.api.conftest import World
from tests.conftest import png_bytes
from tests.samples import solid

ATTACHMENT_FIELDS = {"md5", "contentType", "fileSize", "fileName", "fileSizeBytes", "id"}


def test_an_upload_is_staged_recorded_and_sent_to_the_scan(world: World) -> None:
    data = png_bytes()
    resp = world.upload("picture1.png", data)

    assert resp.status_code == 200, resp.text
    body = resp.json
    assert set(body) == ATTACHMENT_FIELDS
    assert body["md5"] == hashlib.md5(data).hexdigest()
    assert body["contentType"] == "image/png"
    assert body["fileName"] == "picture1"
    assert body["fileSizeBytes"] == len(data)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Request-ID"]

    (upload_id,) = world.sender.sent  # one scan task, for this upload
    upload = world.records.uploads[upload_id]
    assert (upload.state, upload.attachment_id, upload.size) == ("staged", body["id"], len(data))
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert upload.staging_key is not None
    assert world.objects.data[(world.settings.bucket_staging, upload.staging_key)] == data


def test_an_upload_is_sent_in_its_tenants_fair_share_or_as_bulk_when_asked(world: World) -> None:
    assert world.upload("a.png", png_bytes()).status_code == 200
    assert world.upload("b.png", png_bytes(), headers={"X-Attachd-Lane": "Bulk"}).status_code == 200
    assert (
        world.upload("c.png", png_bytes(), headers={"X-Attachd-Lane": "first"}).status_code == 200
    )
    # Only "bulk" changes the lane: a client can put itself behind others, never ahead.
    assert world.sender.lanes == [
        (world.tenant, False),
        (world.tenant, True),
        (world.tenant, False),
    ]


def test_a_broker_that_is_down_still_gets_the_client_its_answer(world: World) -> None:
    world.sender.down = True
    resp = world.upload("queued.png", png_bytes())
    assert resp.status_code == 200, resp.text
    assert [u.state for u in world.records.uploads.values()] == ["staged"]


def test_no_token_or_an_unknown_one_is_access_denied(world: World) -> None:
    for token in ("", "not-a-token"):
        resp = world.upload("a.png", png_bytes(), token=token)
        assert resp.status_code == 403
        assert resp.json["errorCode"] == "ACCESS_DENIED"
    assert world.sender.sent == []
    assert world.objects.data == {}


def test_a_token_of_another_tenant_is_action_denied(world: World) -> None:
    other = world.records.add_profile("elsewhere")
    resp = world.upload("a.png", png_bytes(), profile_id=other)
    assert resp.status_code == 403
    assert resp.json["errorCode"] == "ACTION_DENIED"


def test_a_file_over_the_limit_is_413_and_leaves_nothing(world: World) -> None:
    # Under the body cap, so refused mid-stream by the hashing reader...
    over = png_bytes() + b"\0" * world.settings.max_upload_size
    resp = world.upload("big.png", over)
    assert resp.status_code == 413, resp.text
    # ...and over it, refused on Content-Length before a byte is read.
    resp = world.upload("bigger.png", b"\0" * (2 * 1024 * 1024))
    assert resp.status_code == 413, resp.text
    assert resp.json["errorCode"] == "OTHER"
    assert world.objects.data == {}
    assert world.records.uploads == {}
    assert world.sender.sent == []


def test_a_type_that_is_not_allowed_is_415_and_counted_as_such(world: World) -> None:
    resp = world.upload("notes.txt", b"hello")
    assert resp.status_code == 415
    assert "is not allowed" in resp.json["message"]
    assert world.counter.counts == {("typecheck_rejections", ("intake", "type_not_allowed")): 1}
    assert world.objects.data == {}


def test_a_jpeg_named_png_is_415_and_counted_as_a_content_mismatch(world: World) -> None:
    resp = world.upload("x.png", solid("JPEG"))
    assert resp.status_code == 415
    assert resp.json["message"] == "The content of 'x.png' is of type image/jpeg, not image/png"
    assert world.counter.counts == {("typecheck_rejections", ("intake", "content_mismatch")): 1}
    assert world.objects.data == {}
    assert world.records.uploads == {}


def test_other_refusals_are_not_counted_as_type_rejections(world: World) -> None:
    assert world.upload("a.png", b"").status_code == 400  # empty part
    assert world.upload("a.png", png_bytes(), token="nope").status_code == 403
    assert world.counter.counts == {}
