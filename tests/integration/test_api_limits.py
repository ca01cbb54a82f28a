"""Limits, all settings, on a second real gunicorn configured tight (64 KiB files, 3 parts, 1 KiB
part headers, 20-character names, 1 s idle timeout and grace): what is over them is refused, a
client that sends too slowly is cut off within seconds, and nothing is left behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from storage.objects import ObjectStore
from tests.conftest import png_bytes
from tests.integration.api_support import (
    Account,
    api_server,
    assert_error,
    file_part_head,
    leaves_nothing,
    md5,
    new_account,
    padded_png,
    post_parts,
    send_partial,
    upload,
)
from tests.integration.conftest import Stack

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def tight(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with api_server(
        stack,
        tmp_path_factory.mktemp("tight-api"),
        ATTACHD_MAX_UPLOAD_SIZE=str(LIMIT),
        ATTACHD_MAX_PARTS="3",
        ATTACHD_MAX_PART_HEADER_SIZE="1KiB",
        ATTACHD_MAX_FILENAME_LENGTH="20",
        ATTACHD_UPLOAD_IDLE_TIMEOUT="1",
        ATTACHD_UPLOAD_GRACE_SECONDS="1",
    ) as base:
        yield base


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


# --- sizes, parts, headers, names ---------------------------------------------------------------


def test_the_size_limit_is_a_setting(
    stack: Stack, tight: str, account: Account, objects: ObjectStore
) -> None:
    assert upload(tight, account, "fits.png", padded_png(LIMIT)).status_code == 200
    with leaves_nothing(stack, objects, account, "over.png"):
        resp = upload(tight, account, "over.png", padded_png(LIMIT + 1))
    assert f"{LIMIT} bytes" in assert_error(resp, 413)


def test_a_body_declared_too_large_is_refused_before_it_is_read(
    stack: Stack, tight: str, account: Account, objects: ObjectStore
) -> None:
    boundary = uuid.uuid4().hex
    head = file_part_head(boundary, "huge.png")
    with leaves_nothing(stack, objects, account, "huge.png"):
        answer = send_partial(
            tight,
            account.path(f"/uploadAttachment?accessTokenId={account.token}"),
            {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(10 * 1024 * 1024),
            },
            head + png_bytes(),
        )
    assert answer is not None and answer.status == 413  # not 408: nothing was waited for


def test_the_number_of_parts_is_limited(tight: str, account: Account) -> None:
    token = ("accessTokenId", (None, account.token))
    file_part = ("attachment", ("p.png", png_bytes()))
    name = ("filename", (None, "p.png"))
    assert post_parts(tight, account, [token, name, file_part]).status_code == 200
    resp = post_parts(tight, account, [token, name, ("extra", (None, "x")), file_part])
    assert "number of form body parts" in assert_error(resp, 400)


def test_the_size_of_a_parts_headers_is_limited(tight: str, account: Account) -> None:
    parts = [("attachment", ("h.png", png_bytes(), "image/png", {"X-Pad": "x" * 1100}))]
    resp = post_parts(tight, account, parts, params={"accessTokenId": account.token})
    assert "headers" in assert_error(resp, 400)


def test_the_length_of_a_file_name_is_limited(tight: str, account: Account) -> None:
    assert upload(tight, account, "a" * 16 + ".png", png_bytes()).status_code == 200
    assert "longer than 20" in assert_error(
        upload(tight, account, "a" * 17 + ".png", png_bytes()), 400
    )


def test_text_fields_are_small(tight: str, account: Account) -> None:
    parts = [("filename", (None, "n" * 70_000 + ".png")), ("attachment", ("t.png", png_bytes()))]
    resp = post_parts(tight, account, parts, params={"accessTokenId": account.token})
    assert_error(resp, 400)


# --- slow clients -------------------------------------------------------------------------------


def _slow_upload(
    base: str,
    account: Account,
    first: bytes,
    *,
    trickle: tuple[bytes, float, int] | None = None,
    token_in_body: bool = False,
) -> float:
    """Declare a 60 KiB upload, send `first` of it (then `trickle`), and return how long the
    server took to answer 408."""
    boundary = uuid.uuid4().hex
    path = account.path("/uploadAttachment")
    if not token_in_body:
        path += f"?accessTokenId={account.token}"
    answer = send_partial(
        base,
        path,
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(60 * 1024),
        },
        first.replace(b"BOUNDARY", boundary.encode()),
        trickle=trickle,
    )
    assert answer is not None, "the server closed the connection without an answer"
    assert answer.status == 408, answer.body
    assert answer.json()["errorCode"] == "OTHER"
    return answer.seconds


def test_a_client_that_stalls_in_the_file_is_cut_off(
    stack: Stack, tight: str, account: Account, objects: ObjectStore
) -> None:
    start = file_part_head("BOUNDARY", "stall.png") + png_bytes()
    with leaves_nothing(stack, objects, account, "stall.png"):
        seconds = _slow_upload(tight, account, start)
    assert seconds < 5


def test_a_client_that_stalls_before_the_file_is_cut_off(tight: str, account: Account) -> None:
    start = b'--BOUNDARY\r\nContent-Disposition: form-data; name="accessTokenId"\r\n\r\n'
    assert _slow_upload(tight, account, start + account.token[:10].encode(), token_in_body=True) < 5


def test_a_client_that_trickles_is_cut_off_at_the_deadline(
    stack: Stack, tight: str, account: Account, objects: ObjectStore
) -> None:
    # One byte every 0.4 s never trips the 1 s idle timeout; the whole body was due within
    # grace + size / min rate, about 2 s. Without the deadline this client would hold a server
    # thread for as long as it pleased (here: the 8 s it keeps trickling).
    start = file_part_head("BOUNDARY", "drip.png") + png_bytes()
    with leaves_nothing(stack, objects, account, "drip.png"):
        seconds = _slow_upload(tight, account, start, trickle=(b"\0", 0.4, 20))
    assert seconds < 5


# --- chunked bodies -----------------------------------------------------------------------------


def _chunked(parts: list[bytes]) -> Iterator[bytes]:
    yield from parts


def test_a_chunked_upload_is_streamed_like_any_other(stack: Stack, account: Account) -> None:
    boundary = uuid.uuid4().hex
    data = png_bytes(50, 50)
    body = [
        file_part_head(boundary, "chunked.png"),
        data[:100],
        data[100:],
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    resp = requests.post(
        stack.base_url + account.path("/uploadAttachment"),
        params={"accessTokenId": account.token},
        data=_chunked(body),  # a generator: requests sends Transfer-Encoding: chunked
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status_code == 200, resp.text
    assert resp.json()["md5"] == md5(data)


def test_a_chunked_upload_over_the_limit_is_413(
    stack: Stack, tight: str, account: Account, objects: ObjectStore
) -> None:
    boundary = uuid.uuid4().hex
    body = [file_part_head(boundary, "bigchunk.png"), png_bytes()]
    body += [b"\0" * 16384] * 5 + [f"\r\n--{boundary}--\r\n".encode()]
    with leaves_nothing(stack, objects, account, "bigchunk.png"):
        resp = requests.post(
            tight + account.path("/uploadAttachment"),
            params={"accessTokenId": account.token},
            data=_chunked(body),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=30,
        )
    assert_error(resp, 413)
