"""The tus 1.0 protocol status by status on the real stack (as tusd's handler tests walk it):
discovery, every refusal with its status before a byte is kept, termination and expiry leaving
nothing behind."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from core.tasks import ROUTES, TaskName
from storage.broker import make_celery
from storage.engine import utcnow
from storage.objects import ObjectStore
from storage.tus import ResumableObjects, ResumableRecords
from storage.tus_schema import resumable_uploads
from tests.conftest import png_bytes
from tests.integration.api_support import (
    Account,
    assert_error,
    jpeg_bytes,
    new_account,
    padded_png,
    wait_for,
)
from tests.integration.conftest import Stack
from tests.integration.tus_support import (
    TUS,
    auth,
    create,
    created_url,
    endpoint,
    head,
    metadata,
    patch,
    tus_leftovers,
    upload_id,
)
from workers.resumable import Reaper


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def test_discovery_answers_without_a_token(stack: Stack, account: Account) -> None:
    resp = requests.options(endpoint(stack.base_url, account), timeout=10)
    assert resp.status_code == 204
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert resp.headers["Tus-Version"] == "1.0.0"
    extensions = set(resp.headers["Tus-Extension"].split(","))
    assert {"creation", "termination", "checksum", "expiration"} <= extensions
    assert resp.headers["Tus-Max-Size"] == str(stack.settings.max_upload_size)
    assert "sha1" in resp.headers["Tus-Checksum-Algorithm"].split(",")
    # CORS is off by default: no header invites a browser in.
    pre = requests.options(
        endpoint(stack.base_url, account),
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "Access-Control-Allow-Origin" not in pre.headers


def test_creation_answers_location_and_expiry_under_the_profile(
    stack: Stack, account: Account
) -> None:
    resp = create(stack.base_url, account, "a.png", 100)
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    assert location.startswith(account.path("/uploadAttachment/resumable/"))
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert "GMT" in resp.headers["Upload-Expires"]
    url = stack.url(location)
    state = head(url, account)
    assert state.status_code == 200
    assert state.headers["Upload-Offset"] == "0"
    assert state.headers["Upload-Length"] == "100"
    assert state.headers["Cache-Control"] == "no-store"
    assert state.headers["Upload-Metadata"] == metadata(filename="a.png")
    # Uppy names the file `name`.
    uppy = requests.post(
        endpoint(stack.base_url, account),
        headers={**auth(account), "Upload-Length": "5", "Upload-Metadata": metadata(name="u.png")},
        timeout=10,
    )
    assert uppy.status_code == 201, uppy.text
    # The token may come as Crafter's query parameter; the upload's URL then carries it.
    query = requests.post(
        endpoint(stack.base_url, account),
        params={"accessTokenId": account.token},
        headers={**TUS, "Upload-Length": "5", "Upload-Metadata": metadata(filename="q.png")},
        timeout=10,
    )
    assert query.status_code == 201, query.text
    assert "accessTokenId=" in query.headers["Location"]
    assert requests.head(stack.url(query.headers["Location"]), headers=TUS, timeout=10).ok


def test_refusals_at_creation(stack: Stack, account: Account) -> None:
    base = stack.base_url
    no_version = requests.post(
        endpoint(base, account),
        headers={"X-Access-Token-Id": account.token, "Upload-Length": "5"},
        timeout=10,
    )
    assert_error(no_version, 412)
    assert no_version.headers["Tus-Version"] == "1.0.0"
    assert no_version.headers["Tus-Resumable"] == "1.0.0"
    wrong_version = create(base, account, "a.png", 5, **{"Tus-Resumable": "0.2.2"})
    assert_error(wrong_version, 412)
    no_token = requests.post(
        endpoint(base, account),
        headers={**TUS, "Upload-Length": "5", "Upload-Metadata": metadata(filename="a.png")},
        timeout=10,
    )
    assert_error(no_token, 403, "ACCESS_DENIED")
    stranger = new_account(stack.records)
    on_mine = Account(stranger.tenant, stranger.token, account.profile_id)
    assert_error(create(base, on_mine, "a.png", 5), 403, "ACTION_DENIED")
    assert_error(create(base, account, "a.exe", 5), 415)
    over = stack.settings.max_upload_size + 1
    assert_error(create(base, account, "a.png", over), 413)
    assert_error(create(base, account, "a.png", 0), 400)
    nameless = requests.post(
        endpoint(base, account), headers={**auth(account), "Upload-Length": "5"}, timeout=10
    )
    assert_error(nameless, 400)
    deferred = requests.post(
        endpoint(base, account),
        headers={
            **auth(account),
            "Upload-Defer-Length": "1",
            "Upload-Metadata": metadata(filename="a.png"),
        },
        timeout=10,
    )
    assert_error(deferred, 400)


def test_an_upload_belongs_to_its_tenant_and_profile(stack: Stack, account: Account) -> None:
    url = created_url(stack.base_url, account, "mine.png", 10)
    stranger = new_account(stack.records)
    # Another tenant's token on this profile's URL: refused on the profile, before any body.
    for method in ("HEAD", "PATCH", "DELETE"):
        resp = requests.request(
            method,
            url,
            headers={
                **TUS,
                "X-Access-Token-Id": stranger.token,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            data=b"x" * 10 if method == "PATCH" else None,
            timeout=10,
        )
        assert resp.status_code == 403, (method, resp.status_code)
        assert resp.headers["Tus-Resumable"] == "1.0.0"
    # … and the same upload id under the stranger's own profile is not theirs: 404.
    foreign = stack.url(stranger.path(f"/uploadAttachment/resumable/{upload_id(url)}"))
    assert head(foreign, stranger).status_code == 404
    assert_error(patch(foreign, stranger, 0, b"x" * 10), 404)
    # No token at all.
    assert requests.head(url, headers=TUS, timeout=10).status_code == 403
    assert head(url, account).headers["Upload-Offset"] == "0"


def test_refusals_of_a_patch(stack: Stack, account: Account, objects: ObjectStore) -> None:
    data = padded_png(2000)
    url = created_url(stack.base_url, account, "p.png", len(data))
    assert_error(
        requests.patch(
            url,
            data=data[:100],
            headers={**auth(account), "Upload-Offset": "0", "Content-Type": "text/plain"},
            timeout=10,
        ),
        415,
    )
    assert_error(patch(url, account, 5, data[5:100]), 409)
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    assert_error(patch(url, account, 0, data[:100], **{"Upload-Checksum": f"sha1 {wrong}"}), 460)
    assert head(url, account).headers["Upload-Offset"] == "0"  # the chunk was discarded
    assert_error(patch(url, account, 0, data[:100], **{"Upload-Checksum": "crc99 AAAA"}), 400)
    right = base64.b64encode(hashlib.sha1(data[:100]).digest()).decode()
    ok = patch(url, account, 0, data[:100], **{"Upload-Checksum": f"sha1 {right}"})
    assert ok.status_code == 204, ok.text
    assert ok.headers["Upload-Offset"] == "100"
    # More than the upload's length: refused before a byte is read, nothing moves.
    assert_error(patch(url, account, 100, data[100:] + b"extra"), 413)
    assert head(url, account).headers["Upload-Offset"] == "100"
    done = patch(url, account, 100, data[100:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    # A finished upload takes no more bytes.
    assert_error(patch(url, account, 100, b"x"), 409)


def test_content_contradicting_the_name_is_refused_at_the_last_byte_and_leaves_nothing(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    data = jpeg_bytes()
    url = created_url(stack.base_url, account, "lie.png", len(data))
    assert patch(url, account, 0, data[:50]).status_code == 204
    assert_error(patch(url, account, 50, data[50:]), 415)
    assert tus_leftovers(stack, objects, upload_id(url)) == []
    assert stack.records.find_attachment(account.profile_id, "lie") is None
    assert head(url, account).status_code == 404


def test_termination_leaves_nothing(stack: Stack, account: Account, objects: ObjectStore) -> None:
    data = padded_png(3000)
    url = created_url(stack.base_url, account, "gone.png", len(data))
    assert patch(url, account, 0, data[:1000]).status_code == 204
    upload = upload_id(url)
    assert tus_leftovers(stack, objects, upload) != []  # the row and an incomplete part
    resp = requests.delete(url, headers=auth(account), timeout=10)
    assert resp.status_code == 204, resp.text
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert tus_leftovers(stack, objects, upload) == []
    assert head(url, account).status_code == 404
    assert_error(patch(url, account, 1000, data[1000:]), 404)


def test_expired_uploads_are_refused_then_reaped_with_nothing_left(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    data = padded_png(3000)
    url = created_url(stack.base_url, account, "late.png", len(data))
    assert patch(url, account, 0, data[:1000]).status_code == 204
    upload = upload_id(url)
    # Its Upload-Expires passes (moved back in the store: the reaper reads the same column).
    with stack.records.engine.begin() as conn:
        conn.execute(
            update(resumable_uploads)
            .where(resumable_uploads.c.id == upload)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_error(patch(url, account, 1000, data[1000:]), 410)
    assert head(url, account).status_code == 410
    # The beat's task, run by the real worker.
    celery = make_celery(stack.settings)
    celery.send_task(TaskName.REAP_RESUMABLE.value, queue=ROUTES[TaskName.REAP_RESUMABLE].value)
    wait_for(
        lambda: tus_leftovers(stack, objects, upload) == [],
        timeout=60,
        what=f"the expired upload {upload} to be reaped",
    )
    assert head(url, account).status_code == 404
    assert ResumableRecords(stack.records.engine).get_resumable(upload) is None


def test_a_tenants_own_limits_apply_at_creation(stack: Stack) -> None:
    account = new_account(stack.records)
    stack.records.set_tenant_policy(
        account.tenant, max_upload_size=1000, allowed_types=("image/png",)
    )

    # The API reads a tenant's policy again within 5 s (api/policy.py).
    def narrowed() -> bool:
        return create(stack.base_url, account, "a.png", 1001).status_code == 413

    wait_for(narrowed, timeout=15, what="the tenant's limit to apply")
    assert_error(create(stack.base_url, account, "a.jpg", 10), 415)
    assert create(stack.base_url, account, "a.png", 1000).status_code == 201


def test_the_reaper_keeps_a_finished_uploads_file_and_drops_its_row(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    data = png_bytes(20, 20)
    url = created_url(stack.base_url, account, "kept.png", len(data))
    assert patch(url, account, 0, data).status_code == 204
    upload = upload_id(url)
    assert stack.wait_for_state(upload, ("attached", "rejected", "failed")) == "attached"
    with stack.records.engine.begin() as conn:
        conn.execute(
            update(resumable_uploads)
            .where(resumable_uploads.c.id == upload)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    rows = ResumableRecords(stack.records.engine)
    reaper = Reaper(rows, ResumableObjects(objects, stack.settings.bucket_tus, 1))
    assert reaper.reap() == 0  # nothing unfinished was removed
    assert rows.get_resumable(upload) is None
    served = requests.get(
        stack.url(account.path("/attachment/kept")),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert served.status_code == 200 and served.content == data
