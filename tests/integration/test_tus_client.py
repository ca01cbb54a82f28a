"""Resumable uploads with a real tus client (tuspy) against the real stack: a picture sent in
chunks is attached and served byte for byte; an upload cut off mid-PATCH resumes from the bytes
the server kept, from a new client; EICAR sent 64 bytes at a time ends infected, never served."""

from __future__ import annotations

import hashlib
import io
import socket
import time
from urllib.parse import urlsplit

import requests
from tusclient.uploader import Uploader

from storage.objects import ObjectStore
from storage.tus import ResumableRecords
from tests.conftest import png_with_chunk
from tests.integration.api_support import Account, new_account, wait_for
from tests.integration.conftest import Stack
from tests.integration.tus_support import (
    client,
    created_url,
    head,
    noise_png,
    tus_leftovers,
    upload_id,
)

KIB = 1024
MIB = 1024 * KIB


def _served(stack: Stack, account: Account, name: str) -> bytes:
    resp = requests.get(
        stack.url(account.path(f"/attachment/{name}")),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.content


def _uploader(stack: Stack, account: Account, name: str, data: bytes, **kw: object) -> Uploader:
    return client(stack.base_url, account).uploader(
        file_stream=io.BytesIO(data), metadata={"filename": name}, **kw
    )


def test_a_picture_in_256_kib_chunks_is_attached_and_served_byte_for_byte(
    stack: Stack, objects: ObjectStore
) -> None:
    account = new_account(stack.records)
    data = noise_png(4 * MIB)
    assert len(data) >= 4 * MIB
    uploader = _uploader(stack, account, "big.png", data, chunk_size=256 * KIB)
    uploader.upload()
    upload = upload_id(uploader.url)
    assert stack.wait_for_state(upload, ("attached", "rejected", "failed", "infected")) == (
        "attached"
    ), stack.records.get_upload(upload)
    recorded = stack.records.get_upload(upload)
    assert recorded is not None
    # Recorded as the multipart route records: the received bytes' digests and size.
    assert recorded.md5 == hashlib.md5(data).hexdigest()
    assert recorded.sha256 == hashlib.sha256(data).hexdigest()
    assert recorded.size == len(data)
    assert _served(stack, account, "big") == data
    # The status route follows it by name, as any upload.
    status = requests.get(
        stack.url(account.path("/attachment/big/status")),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert status.status_code == 200 and status.json()["state"] == "attached", status.text
    # A finished upload's URL still answers its offset (clients check before resuming).
    done = head(uploader.url, account)
    assert done.status_code == 200
    assert done.headers["Upload-Offset"] == str(len(data))
    # No incomplete part left behind once the file is whole.
    keys = [k for k, _ in objects.list_keys(stack.settings.bucket_tus, prefix=f"{upload}/")]
    assert keys == []


def _cut_off(url: str, account: Account, offset: int, data: bytes, send: int) -> None:
    """A PATCH announcing the whole rest, whose connection drops after `send` bytes."""
    parts = urlsplit(url)
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Tus-Resumable: 1.0.0\r\nX-Access-Token-Id: {account.token}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {len(data) - offset}\r\n\r\n"
    ).encode()
    host, port = parts.netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request + data[offset : offset + send])
        sock.shutdown(socket.SHUT_WR)


def test_an_upload_cut_off_after_1_5_mib_resumes_from_a_new_client(stack: Stack) -> None:
    account = new_account(stack.records)
    data = noise_png(3 * MIB)
    url = created_url(stack.base_url, account, "phone.png", len(data))
    _cut_off(url, account, 0, data, 1536 * KIB)

    # The server keeps what arrived before the drop: the offset says so once it has committed.
    def kept() -> bool:
        resp = head(url, account)
        return resp.headers.get("Upload-Offset") == str(1536 * KIB)

    wait_for(kept, timeout=30, what="the 1.5 MiB received before the drop to be kept")

    # A new client, knowing only the URL, asks for the offset and sends the rest.
    fresh = _uploader(stack, account, "phone.png", data, chunk_size=512 * KIB, url=url)
    assert fresh.offset == 1536 * KIB
    fresh.upload()
    upload = upload_id(url)
    assert stack.wait_for_state(upload, ("attached", "rejected", "failed", "infected")) == (
        "attached"
    )
    recorded = stack.records.get_upload(upload)
    assert recorded is not None and recorded.md5 == hashlib.md5(data).hexdigest()
    assert _served(stack, account, "phone") == data


def test_eicar_in_64_byte_chunks_ends_infected_and_is_never_served(
    stack: Stack, eicar: bytes
) -> None:
    account = new_account(stack.records)
    data = png_with_chunk(eicar)
    uploader = _uploader(stack, account, "eicar.png", data, chunk_size=64)
    uploader.upload()
    upload = upload_id(uploader.url)
    assert stack.wait_for_state(upload, ("attached", "rejected", "failed", "infected")) == (
        "infected"
    )
    recorded = stack.records.get_upload(upload)
    assert recorded is not None and recorded.md5 == hashlib.md5(data).hexdigest()
    assert recorded.signature and "EICAR" in recorded.signature.upper()
    for rest in ("/attachment/eicar", "/attachment/eicar/details"):
        resp = requests.get(
            stack.url(account.path(rest)), params={"accessTokenId": account.token}, timeout=30
        )
        assert resp.status_code == 404, resp.text


def test_a_checksummed_upload_by_tuspy_is_verified_chunk_by_chunk(stack: Stack) -> None:
    account = new_account(stack.records)
    data = noise_png(300 * KIB)
    uploader = _uploader(
        stack, account, "summed.png", data, chunk_size=100 * KIB, upload_checksum=True
    )
    uploader.upload()
    upload = upload_id(uploader.url)
    assert stack.wait_for_state(upload, ("attached", "rejected", "failed", "infected")) == (
        "attached"
    )
    assert _served(stack, account, "summed") == data


def test_a_finished_upload_keeps_no_incomplete_part_and_its_row_is_recorded(
    stack: Stack, objects: ObjectStore
) -> None:
    account = new_account(stack.records)
    data = noise_png(200 * KIB)
    uploader = _uploader(stack, account, "small.png", data, chunk_size=64 * KIB)
    uploader.upload()
    upload = upload_id(uploader.url)
    row = ResumableRecords(stack.records.engine).get_resumable(upload)
    assert row is not None and row.recorded_at is not None and row.offset == len(data)
    assert row.lease_owner is None
    # The staged object is the pipeline's now; nothing else of the tus upload remains.
    deadline = time.monotonic() + 30
    while "staged object" in tus_leftovers(stack, objects, upload) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tus_leftovers(stack, objects, upload) == ["row"]
