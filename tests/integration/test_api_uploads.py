"""POST …/uploadAttachment on the real stack: Crafter's answer, names and types, and every way an
upload is refused — always with nothing left in staging and no record."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from storage.objects import ObjectStore
from tests.conftest import png_bytes
from tests.integration.api_support import (
    ATTACHMENT_FIELDS,
    ELF,
    HTML,
    Account,
    assert_error,
    file_part_head,
    jpeg_bytes,
    latest_upload,
    leaves_nothing,
    md5,
    new_account,
    padded_png,
    post_parts,
    send_partial,
    staging_keys,
    upload,
)
from tests.integration.conftest import Stack
from tests.samples import CRAFTER_FILE_SIZES


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def test_the_answer_has_exactly_crafters_fields(stack: Stack, account: Account) -> None:
    data = png_bytes(40, 30)
    resp = upload(stack.base_url, account, "picture1.png", data)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == ATTACHMENT_FIELDS
    assert body["md5"] == md5(data)
    assert body["contentType"] == "image/png"
    assert body["fileName"] == "picture1"
    assert body["fileSizeBytes"] == len(data)
    assert body["fileSize"] == f"{len(data)} B"
    assert re.fullmatch(r"[0-9a-f]{24}", body["id"])
    up = latest_upload(stack, account, "picture1")
    assert up.attachment_id == body["id"]
    assert (up.declared_type, up.sniffed_type) == ("image/png", "image/png")


# Crafter's reference table (the 0 row cannot be uploaded: an empty file is refused; the unit
# test of format_file_size covers it). 5 MiB is the default limit itself, which is accepted.
@pytest.mark.parametrize(
    ("size", "text"),
    [(size, text) for size, text in CRAFTER_FILE_SIZES if size > 0],
)
def test_file_size_follows_crafters_table(
    stack: Stack, account: Account, size: int, text: str
) -> None:
    resp = upload(stack.base_url, account, f"s{size}.png", padded_png(size))
    assert resp.status_code == 200, resp.text
    assert (resp.json()["fileSize"], resp.json()["fileSizeBytes"]) == (text, size)


def test_crafters_java_client_body_token_and_name_before_the_file(
    stack: Stack, account: Account
) -> None:
    data = jpeg_bytes()
    # What ProfileServiceRestClient sends: the token and the real name as fields, then the file
    # under a temp-file name whose "extension" means nothing.
    temp_name = f"{account.profile_id}-picture1.jpg8123attachment"
    resp = post_parts(
        stack.base_url,
        account,
        [
            ("accessTokenId", (None, account.token)),
            ("filename", (None, "picture1.jpg")),
            ("attachment", (temp_name, data, "application/octet-stream")),
        ],
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["fileName"] == "picture1"
    assert resp.json()["contentType"] == "image/jpeg"
    assert latest_upload(stack, account, "picture1").original_name == "picture1.jpg"


def test_a_blank_filename_field_leaves_the_parts_own_name(stack: Stack, account: Account) -> None:
    resp = post_parts(
        stack.base_url,
        account,
        [("filename", (None, "  ")), ("attachment", ("own.png", png_bytes()))],
        params={"accessTokenId": account.token},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["fileName"] == "own"


@pytest.mark.parametrize(
    ("name", "file_name"),
    [
        ("dir/sub/pic.jpg", "pic"),
        ("C:\\Users\\me\\pic.jpg", "pic"),
        ("a.b.jpg", "a.b"),
        ("UPPER.JPG", "UPPER"),  # Crafter refuses upper-case extensions; attachd does not
        ("photo.JPEG", "photo"),
        ("café ☕.jpe", "café ☕"),
    ],
)
def test_file_name_is_the_base_name_and_the_type_its_extension(
    stack: Stack, account: Account, name: str, file_name: str
) -> None:
    resp = upload(stack.base_url, account, name, jpeg_bytes())
    assert resp.status_code == 200, resp.text
    assert resp.json()["fileName"] == file_name
    assert resp.json()["contentType"] == "image/jpeg"


def test_the_same_name_keeps_its_id_whatever_the_extension(stack: Stack, account: Account) -> None:
    first = upload(stack.base_url, account, "avatar.png", png_bytes()).json()
    again = upload(stack.base_url, account, "avatar.png", png_bytes(9, 9)).json()
    other_type = upload(stack.base_url, account, "avatar.jpg", jpeg_bytes()).json()
    assert first["id"] == again["id"] == other_type["id"]
    assert other_type["contentType"] == "image/jpeg"
    elsewhere = new_account(stack.records)
    assert upload(stack.base_url, elsewhere, "avatar.png", png_bytes()).json()["id"] != first["id"]


# --- refusals: 415 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.txt", b"plain text\n" * 20),
        ("setup.exe", ELF),
        ("page.html", HTML),
        ("no-extension", png_bytes()),
        ("image.ico", png_bytes()),  # a known image type, but not on the allowed list
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_type_not_allowed_is_refused_with_415(
    stack: Stack, account: Account, objects: ObjectStore, name: str, data: bytes
) -> None:
    with leaves_nothing(stack, objects, account, name):
        message = assert_error(upload(stack.base_url, account, name, data), 415)
    assert "not allowed" in message


@pytest.mark.parametrize(
    ("name", "data", "found"),
    [
        ("script.jpg", HTML, "HTML"),
        ("binary.png", ELF, "executable"),
        ("really-a-png.jpg", png_bytes(), "image/png"),
        ("zeros.gif", b"\0" * 5000, "binary"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_content_contradicting_its_name_is_refused_with_415(
    stack: Stack, account: Account, objects: ObjectStore, name: str, data: bytes, found: str
) -> None:
    with leaves_nothing(stack, objects, account, name):
        message = assert_error(upload(stack.base_url, account, name, data), 415)
    assert found in message


def _partial_upload(stack: Stack, account: Account, name: str, first_bytes: bytes) -> float:
    """Declare a 4 MiB file, send only its first bytes, then wait: the answer must come without
    the rest. (64 KiB, because the server reads the body in 32 KiB chunks.)"""
    boundary = uuid.uuid4().hex
    head = file_part_head(boundary, name)
    assert len(first_bytes) == 64 * 1024
    answer = send_partial(
        stack.base_url,
        account.path(f"/uploadAttachment?accessTokenId={account.token}"),
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + 4 * 1024 * 1024),
        },
        head + first_bytes,
    )
    assert answer is not None
    assert answer.status == 415, answer.body
    assert answer.json()["errorCode"] == "OTHER"
    return answer.seconds


def test_a_refused_name_is_answered_without_waiting_for_the_file(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    with leaves_nothing(stack, objects, account, "payload.exe"):
        seconds = _partial_upload(stack, account, "payload.exe", (ELF * 300)[: 64 * 1024])
    assert seconds < 5  # not the 30 s idle timeout: nothing more was awaited


def test_content_contradicting_its_name_fails_after_its_first_kib(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    html = (HTML * 200)[: 64 * 1024]
    with leaves_nothing(stack, objects, account, "fake.jpg"):
        seconds = _partial_upload(stack, account, "fake.jpg", html)
    assert seconds < 5


# --- refusals: 400, 404, 413 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "what"),
    [
        ([("filename", (None, "x.png"))], "no 'attachment'"),
        ([("attachment", ("empty.png", b""))], "empty"),
        ([("attachment", ("a.png", png_bytes())), ("attachment", ("b.png", png_bytes()))], "more"),
        ([("attachment", ("", png_bytes()))], "no file name"),
        ([("attachment", ("bad\x07name.png", png_bytes()))], "forbidden character"),
        ([("attachment", ("rtl\u202egnp.png", png_bytes()))], "forbidden character"),
        ([("attachment", (".png", png_bytes()))], "empty once"),
        ([("attachment", ("x" * 252 + ".png", png_bytes()))], "longer than 255"),
        # Windows would save "x.png " as "x.png": the name must not hide its real extension.
        ([("attachment", ("trailing.png ", png_bytes()))], "must not end"),
        ([("attachment", ("dot.png.", png_bytes()))], "must not end"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_missing_empty_or_doubtful_attachment_part_is_400(
    stack: Stack, account: Account, objects: ObjectStore, parts: list, what: str
) -> None:
    before = staging_keys(objects, stack.settings)
    resp = post_parts(stack.base_url, account, parts, params={"accessTokenId": account.token})
    assert what in assert_error(resp, 400)
    assert staging_keys(objects, stack.settings) - before == set()
    assert stack.records.attached_files(account.profile_id) == []
    assert stack.records.find_attachment(account.profile_id, "a") is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"attachment": "x"}'),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; nam"),
        ("multipart/form-data; boundary=xyz", b"not a multipart body at all"),
        ("multipart/form-data", b"--xyz\r\n\r\n--xyz--\r\n"),  # no boundary parameter
    ],
)
def test_a_body_that_is_not_a_multipart_form_is_400(
    stack: Stack, account: Account, objects: ObjectStore, content_type: str, body: bytes
) -> None:
    before = staging_keys(objects, stack.settings)
    resp = requests.post(
        stack.base_url + account.path("/uploadAttachment"),
        params={"accessTokenId": account.token},
        data=body,
        headers={"Content-Type": content_type},
        timeout=30,
    )
    assert_error(resp, 400)
    assert staging_keys(objects, stack.settings) - before == set()


@pytest.mark.parametrize(
    "bad_id", ["123", "5" * 25, "ABCDEF0123456789ABCDEF01", "not-an-id-at-all-!!!!!!"]
)
def test_a_malformed_profile_id_is_400(stack: Stack, account: Account, bad_id: str) -> None:
    resp = upload(
        stack.base_url, Account(account.tenant, account.token, bad_id), "a.png", png_bytes()
    )
    assert "Invalid profile ID" in assert_error(resp, 400)


def test_an_unknown_profile_is_404_no_such_profile(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    missing = Account(account.tenant, account.token, "0123456789abcdef01234567")
    with leaves_nothing(stack, objects, missing, "a.png"):
        resp = upload(stack.base_url, missing, "a.png", png_bytes())
    message = assert_error(resp, 404, "NO_SUCH_PROFILE")
    assert message == 'No profile with ID "0123456789abcdef01234567" found'


def test_a_file_over_the_limit_is_413(stack: Stack, account: Account, objects: ObjectStore) -> None:
    too_big = padded_png(stack.settings.max_upload_size + 1)
    with leaves_nothing(stack, objects, account, "big.png"):
        resp = upload(stack.base_url, account, "big.png", too_big)
    assert str(stack.settings.max_upload_size) in assert_error(resp, 413)
