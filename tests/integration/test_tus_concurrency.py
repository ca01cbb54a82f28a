"""Two PATCHes of one upload at once, on two API processes (two gunicorns on the same stores, as
two API hosts would be): one proceeds, the other is refused (423 while the first holds the
upload, 409 once its offset moved), and no byte is lost or written twice. The file spans several
S3 parts (5 MiB each here), so the parts, the incomplete part and their commits are all crossed."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from storage.objects import ObjectStore
from tests.integration.api_support import Account, api_server, new_account, padded_png, wait_for
from tests.integration.conftest import Stack
from tests.integration.tus_support import (
    created_url,
    head,
    patch,
    tus_leftovers,
    upload_id,
)

MIB = 1024 * 1024
LIMIT = 16 * MIB


@pytest.fixture(scope="module")
def two_apis(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    settings = {"ATTACHD_MAX_UPLOAD_SIZE": str(LIMIT), "ATTACHD_UPLOAD_PART_SIZE": "5MiB"}
    with (
        api_server(stack, tmp_path_factory.mktemp("tus-api-1"), **settings) as first,
        api_server(stack, tmp_path_factory.mktemp("tus-api-2"), **settings) as second,
    ):
        yield first, second


def _on(base: str, url: str) -> str:
    """The same upload's URL on another API."""
    return base + urlsplit(url).path


def _held_body(
    data: bytes, first: int, sent: threading.Event, go: threading.Event
) -> Iterator[bytes]:
    """A chunked body that sends `first` bytes, then waits for `go` before the rest."""
    for start in range(0, first, 256 * 1024):
        yield data[start : min(start + 256 * 1024, first)]
    sent.set()
    assert go.wait(60)
    for start in range(first, len(data), 256 * 1024):
        yield data[start : start + 256 * 1024]


def _recorded_md5(stack: Stack, url: str) -> str:
    upload = upload_id(url)
    wait_for(lambda: stack.records.get_upload(upload) is not None, 30, "the record")
    recorded = stack.records.get_upload(upload)
    assert recorded is not None
    return recorded.md5


def test_a_patch_while_another_writes_is_refused_and_nothing_is_lost(
    stack: Stack, two_apis: tuple[str, str], objects: ObjectStore
) -> None:
    first, second = two_apis
    account: Account = new_account(stack.records)
    data = padded_png(12 * MIB + 12345)
    url = created_url(first, account, "race.png", len(data))
    on_second = _on(second, url)

    # A: 6 MiB of its chunk through the first API (a part is sent, the rest waits), then held.
    sent, go = threading.Event(), threading.Event()
    result: dict[str, requests.Response] = {}
    chunk = data[: 9 * MIB]

    def slow() -> None:
        result["a"] = patch(url, account, 0, _held_body(chunk, 6 * MIB, sent, go))

    writer = threading.Thread(target=slow)
    writer.start()
    try:
        assert sent.wait(30)

        # B, through the second API, at the offset the upload is at: it is being written.
        def busy() -> bool:
            at = int(head(on_second, account).headers["Upload-Offset"])
            resp = patch(on_second, account, at, data[at : at + MIB])
            result["b"] = resp
            return resp.status_code == 423

        wait_for(busy, 30, "B to be refused while A writes")
        assert result["b"].headers["Tus-Resumable"] == "1.0.0"

        # A part of A's is committed already: B at that offset is still refused (423).
        def part_committed() -> bool:
            return head(on_second, account).headers["Upload-Offset"] == str(5 * MIB)

        wait_for(part_committed, 30, "A's first part to be committed")
        offset = 5 * MIB
        assert patch(on_second, account, offset, data[offset : offset + MIB]).status_code == 423
    finally:
        go.set()
        writer.join(60)
    assert result["a"].status_code == 204, result["a"].text
    assert result["a"].headers["Upload-Offset"] == str(9 * MIB)
    # B's stale offset is now a 409; resumed from HEAD, the rest lands through the second API.
    assert patch(on_second, account, 0, data[:MIB]).status_code == 409
    offset = int(head(on_second, account).headers["Upload-Offset"])
    assert offset == 9 * MIB
    done = patch(on_second, account, offset, data[offset:])
    assert done.status_code == 204, done.text
    assert _recorded_md5(stack, url) == hashlib.md5(data).hexdigest()


def test_two_patches_racing_on_two_apis_one_wins_and_nothing_is_lost(
    stack: Stack, two_apis: tuple[str, str]
) -> None:
    first, second = two_apis
    account = new_account(stack.records)
    data = padded_png(11 * MIB + 777)
    url = created_url(first, account, "both.png", len(data))
    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def send(name: str, base: str) -> None:
        start.wait()
        answers[name] = patch(_on(base, url), account, 0, data).status_code

    threads = [
        threading.Thread(target=send, args=("first", first)),
        threading.Thread(target=send, args=("second", second)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers.values()) in ([204, 409], [204, 423]), answers
    assert head(url, account).headers["Upload-Offset"] == str(len(data))
    assert _recorded_md5(stack, url) == hashlib.md5(data).hexdigest()


def test_every_byte_of_a_multi_part_upload_in_odd_chunks_arrives_once(
    stack: Stack, two_apis: tuple[str, str], objects: ObjectStore
) -> None:
    """Chunks that cross part boundaries, alternating between the two APIs."""
    first, second = two_apis
    account = new_account(stack.records)
    data = padded_png(11 * MIB + 3)
    url = created_url(first, account, "odd.png", len(data))
    offset, turn, size = 0, 0, 3 * MIB + 1
    while offset < len(data):
        base = (first, second)[turn % 2]
        resp = patch(_on(base, url), account, offset, data[offset : offset + size])
        assert resp.status_code == 204, resp.text
        offset = int(resp.headers["Upload-Offset"])
        turn += 1
    assert _recorded_md5(stack, url) == hashlib.md5(data).hexdigest()
    assert tus_leftovers(stack, objects, upload_id(url)) in (["row", "staged object"], ["row"])
