"""Reading attachments on the real stack: the list, details, the download (Range, conditional GET,
safe headers), the pipeline status, and DELETE. Only attached versions are ever served."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import requests

from storage.objects import ObjectStore
from tests.conftest import png_bytes, png_with_chunk
from tests.integration.api_support import (
    ATTACHMENT_FIELDS,
    SVG,
    Account,
    assert_error,
    get,
    md5,
    new_account,
    upload,
    upload_attached,
    wait_until_final,
)
from tests.integration.conftest import Stack

PNG = png_bytes(64, 48)


class Attached:
    def __init__(self, account: Account, png: dict[str, Any], svg: dict[str, Any]) -> None:
        self.account = account
        self.png = png
        self.svg = svg


@pytest.fixture(scope="module")
def attached(stack: Stack) -> Attached:
    """A profile with two attached files, read (never changed) by the tests below."""
    account = new_account(stack.records)
    png = upload_attached(stack, account, "photo.png", PNG)
    svg = upload_attached(stack, account, "drawing.svg", SVG)
    return Attached(account, png, svg)


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


# --- list ---------------------------------------------------------------------------------------


def test_list_is_a_bare_array_of_the_attached_files(stack: Stack, attached: Attached) -> None:
    resp = get(stack.base_url, attached.account, "/attachments")
    assert resp.status_code == 200
    assert resp.json() == [attached.png, attached.svg]
    for item in resp.json():
        assert set(item) == ATTACHMENT_FIELDS


@pytest.mark.parametrize("path", ["/attachments", "/attachments/"])
def test_list_answers_with_or_without_a_trailing_slash(
    stack: Stack, attached: Attached, path: str
) -> None:
    assert get(stack.base_url, attached.account, path).json() == [attached.png, attached.svg]


def test_list_accepts_crafters_profile_id_parameter(stack: Stack, attached: Attached) -> None:
    # Crafter's route read ?profileId= and ignored its path: a client built against that works.
    resp = requests.get(
        stack.base_url + "/api/1/profile/ignored/attachments/",
        params={"profileId": attached.account.profile_id, "accessTokenId": attached.account.token},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert [a["fileName"] for a in resp.json()] == ["photo", "drawing"]


def test_list_of_a_profile_without_attachments_is_empty(stack: Stack, account: Account) -> None:
    resp = get(stack.base_url, account, "/attachments")
    assert (resp.status_code, resp.json()) == (200, [])


def test_uploads_not_attached_are_neither_listed_nor_served(
    stack: Stack, account: Account, eicar: bytes
) -> None:
    assert upload(stack.base_url, account, "virus.png", png_with_chunk(eicar)).ok
    assert wait_until_final(stack, account, "virus").state == "infected"
    # Passes the API's sniff, fails the verifier's full decode.
    assert upload(stack.base_url, account, "broken.png", PNG[:60]).ok
    assert wait_until_final(stack, account, "broken").state == "rejected"
    assert get(stack.base_url, account, "/attachments").json() == []
    for name in ("virus", "broken"):
        assert "no verified version" in assert_error(
            get(stack.base_url, account, f"/attachment/{name}"), 404
        )
        assert_error(get(stack.base_url, account, f"/attachment/{name}/details"), 404)


# --- details ------------------------------------------------------------------------------------


def test_details_is_the_upload_answer(stack: Stack, attached: Attached) -> None:
    resp = get(stack.base_url, attached.account, "/attachment/photo/details")
    assert (resp.status_code, resp.json()) == (200, attached.png)


def test_the_id_works_wherever_a_name_does(stack: Stack, attached: Attached) -> None:
    by_id = f"/attachment/{attached.png['id']}"
    assert get(stack.base_url, attached.account, by_id + "/details").json() == attached.png
    assert get(stack.base_url, attached.account, by_id).content == PNG
    assert get(stack.base_url, attached.account, by_id + "/status").json()["fileName"] == "photo"


def test_unknown_attachments_are_404(stack: Stack, attached: Attached) -> None:
    for rest in (
        "/attachment/nope",
        "/attachment/nope/details",
        "/attachment/nope/status",
        "/attachment/0123456789abcdef01234567",
    ):
        assert "No attachment" in assert_error(get(stack.base_url, attached.account, rest), 404)
    delete = requests.delete(
        stack.base_url + attached.account.path("/attachment/nope"),
        params={"accessTokenId": attached.account.token},
        timeout=30,
    )
    assert_error(delete, 404)


def test_another_profiles_attachment_is_not_found_by_name_or_id(
    stack: Stack, attached: Attached
) -> None:
    # Same tenant, same token, another profile: attachments are per profile.
    other = stack.records.create_profile(
        attached.account.tenant, "bob", "b@example.com", enabled=True
    )
    elsewhere = Account(attached.account.tenant, attached.account.token, other.id)
    assert_error(get(stack.base_url, elsewhere, "/attachment/photo/details"), 404)
    assert_error(get(stack.base_url, elsewhere, f"/attachment/{attached.png['id']}"), 404)


# --- download -----------------------------------------------------------------------------------


def test_download_streams_the_bytes_with_their_headers(stack: Stack, attached: Attached) -> None:
    resp = get(stack.base_url, attached.account, "/attachment/photo")
    assert resp.status_code == 200
    assert md5(resp.content) == attached.png["md5"]
    assert resp.content == PNG
    headers = resp.headers
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Length"] == str(len(PNG))
    assert headers["ETag"].startswith('"') and len(headers["ETag"]) == 66
    assert headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Content-Disposition"].startswith("inline")
    assert "photo.png" in headers["Content-Disposition"]


def test_svg_is_only_ever_a_download(stack: Stack, attached: Attached) -> None:
    resp = get(stack.base_url, attached.account, "/attachment/drawing")
    assert resp.status_code == 200
    assert resp.content == SVG
    assert resp.headers["Content-Type"] == "image/svg+xml"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_head_has_the_headers_and_no_body(stack: Stack, attached: Attached) -> None:
    resp = requests.head(
        stack.base_url + attached.account.path("/attachment/photo"),
        params={"accessTokenId": attached.account.token},
        timeout=30,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(len(PNG))
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.content == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, len(PNG) - 1),
        ("bytes=-16", len(PNG) - 16, len(PNG) - 1),
        ("bytes=5-99999", 5, len(PNG) - 1),
        ("bytes=-99999", 0, len(PNG) - 1),
    ],
)
def test_a_byte_range_is_206(
    stack: Stack, attached: Attached, header: str, start: int, end: int
) -> None:
    resp = get(stack.base_url, attached.account, "/attachment/photo", headers={"Range": header})
    assert resp.status_code == 206
    assert resp.content == PNG[start : end + 1]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(PNG)}"
    assert resp.headers["Content-Length"] == str(end - start + 1)


def test_a_range_outside_the_file_is_416(stack: Stack, attached: Attached) -> None:
    size = len(PNG)
    resp = get(
        stack.base_url, attached.account, "/attachment/photo", headers={"Range": f"bytes={size}-"}
    )
    assert_error(resp, 416)
    assert resp.headers["Content-Range"] == f"bytes */{size}"


# Several ranges, garbage, another unit, last < first (invalid in RFC 9110): ignored, as allowed.
@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=9-2"])
def test_a_range_that_cannot_be_honoured_as_asked_gets_the_whole_file(
    stack: Stack, attached: Attached, header: str
) -> None:
    resp = get(stack.base_url, attached.account, "/attachment/photo", headers={"Range": header})
    assert resp.status_code == 200
    assert resp.content == PNG


def test_if_range_applies_the_range_only_to_the_same_version(
    stack: Stack, attached: Attached
) -> None:
    etag = get(stack.base_url, attached.account, "/attachment/photo").headers["ETag"]
    same = get(
        stack.base_url,
        attached.account,
        "/attachment/photo",
        headers={"Range": "bytes=0-3", "If-Range": etag},
    )
    assert (same.status_code, same.content) == (206, PNG[:4])
    changed = get(
        stack.base_url,
        attached.account,
        "/attachment/photo",
        headers={"Range": "bytes=0-3", "If-Range": '"something-else"'},
    )
    assert (changed.status_code, changed.content) == (200, PNG)


def test_conditional_get(stack: Stack, attached: Attached) -> None:
    full = get(stack.base_url, attached.account, "/attachment/photo")
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]

    def fetch(**headers: str) -> requests.Response:
        return get(stack.base_url, attached.account, "/attachment/photo", headers=headers)

    not_modified = fetch(**{"If-None-Match": etag})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert not_modified.headers["ETag"] == etag
    assert fetch(**{"If-None-Match": "W/" + etag}).status_code == 304
    assert fetch(**{"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert fetch(**{"If-None-Match": "*"}).status_code == 304
    assert fetch(**{"If-None-Match": '"other"'}).status_code == 200
    assert fetch(**{"If-Modified-Since": modified}).status_code == 304
    long_ago = format_datetime(datetime(2001, 1, 1, tzinfo=UTC), usegmt=True)
    assert fetch(**{"If-Modified-Since": long_ago}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110).
    assert fetch(**{"If-None-Match": '"other"', "If-Modified-Since": modified}).status_code == 200


# --- status -------------------------------------------------------------------------------------


def test_status_of_an_attached_file(stack: Stack, attached: Attached) -> None:
    resp = get(stack.base_url, attached.account, "/attachment/photo/status")
    assert resp.status_code == 200
    status = resp.json()
    assert status["state"] == "attached"
    assert status["served"] is True and status["servedUploadId"] == status["uploadId"]
    assert (status["declaredType"], status["sniffedType"], status["detectedType"]) == (
        "image/png",
        "image/png",
        "image/png",
    )
    assert status["reason"] is None and status["signature"] is None
    assert status["md5"] == attached.png["md5"]
    for stamp in ("createdAt", "updatedAt", "scannedAt", "verifiedAt", "finishedAt"):
        assert status[stamp].endswith("Z"), stamp
    assert status["createdAt"] <= status["scannedAt"] <= status["verifiedAt"]


def test_status_tells_why_an_upload_was_not_attached(
    stack: Stack, account: Account, eicar: bytes
) -> None:
    assert upload(stack.base_url, account, "bad.png", png_with_chunk(eicar)).ok
    wait_until_final(stack, account, "bad")
    status = get(stack.base_url, account, "/attachment/bad/status").json()
    assert status["state"] == "infected"
    assert "EICAR" in status["signature"].upper() and "infected" in status["reason"]
    assert status["served"] is False and status["servedUploadId"] is None
    assert status["finishedAt"] is not None and status["verifiedAt"] is None

    assert upload(stack.base_url, account, "cut.png", PNG[:60]).ok
    wait_until_final(stack, account, "cut")
    status = get(stack.base_url, account, "/attachment/cut/status").json()
    assert status["state"] == "rejected"
    assert status["reason"]


# --- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_record_and_every_object(
    stack: Stack, account: Account, objects: ObjectStore, eicar: bytes
) -> None:
    upload_attached(stack, account, "gone.png", PNG)
    # A newer version of the same name that ends in quarantine: its object must go too.
    assert upload(stack.base_url, account, "gone.png", png_with_chunk(eicar)).ok
    infected = wait_until_final(stack, account, "gone")
    assert infected.state == "infected" and infected.quarantine_key
    attachment = stack.records.find_attachment(account.profile_id, "gone")
    assert attachment is not None
    served = stack.records.get_upload(attachment.current_upload_id or "")
    assert served is not None and served.object_key
    settings = stack.settings
    assert objects.exists(settings.bucket_attachments, served.object_key)

    resp = requests.delete(
        stack.base_url + account.path("/attachment/gone"),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert (resp.status_code, resp.content) == (204, b"")
    assert not objects.exists(settings.bucket_attachments, served.object_key)
    assert not objects.exists(settings.bucket_quarantine, infected.quarantine_key)
    assert stack.records.find_attachment(account.profile_id, "gone") is None
    assert stack.records.get_upload(infected.id) is None
    assert get(stack.base_url, account, "/attachments").json() == []
    for rest in ("/attachment/gone", "/attachment/gone/details", "/attachment/gone/status"):
        assert_error(get(stack.base_url, account, rest), 404)


def test_delete_by_id_and_then_the_name_starts_afresh(stack: Stack, account: Account) -> None:
    first = upload_attached(stack, account, "again.png", PNG)
    resp = requests.delete(
        stack.base_url + account.path(f"/attachment/{first['id']}"),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert resp.status_code == 204
    second = upload(stack.base_url, account, "again.png", PNG).json()
    assert second["id"] != first["id"]
