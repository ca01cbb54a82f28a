"""The chunk writer of a tus PATCH against small fakes of the row store and the object store: part
boundaries, the incomplete part, what is committed on a drop, nothing committed on a bad
checksum. (The same paths against MinIO: tests/integration/test_tus_*.)"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import count

import pytest

from api.tus import parse_checksum, parse_metadata
from api.tus_write import ChunkWriter
from core.errors import BadRequest, ChecksumMismatch, RequestTimeout
from storage.tus import Progress, Resumable, StoredPart

PART = 16


class FakeRows:
    def __init__(self, row: Resumable) -> None:
        self.row = row
        self.commits: list[int] = []

    def renew_lease(self, upload_id: str, owner: str) -> None:
        pass

    def commit_offset(
        self, upload_id: str, owner: str, old_offset: int, progress: Progress
    ) -> None:
        assert old_offset == self.row.offset, "a commit from a stale offset"
        self.row = replace(
            self.row,
            offset=progress.offset,
            multipart_id=progress.multipart_id,
            parts=tuple(progress.parts),
            incomplete_key=progress.incomplete_key,
            incomplete_size=progress.incomplete_size,
        )
        self.commits.append(progress.offset)


class FakeObjects:
    """Parts, multipart completion and incomplete objects in dicts."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.incomplete: dict[str, bytes] = {}
        self.whole: bytes | None = None
        self.started = 0
        self.aborted: list[str] = []
        self._ids = count(1)

    def start_multipart(self, key: str) -> str:
        self.started += 1
        return f"mp-{next(self._ids)}"

    def upload_part(self, key: str, multipart_id: str, number: int, data: memoryview) -> StoredPart:
        self.parts[number] = bytes(data)
        return StoredPart(number, f"etag-{number}", len(data))

    def complete_multipart(self, key: str, multipart_id: str, parts: list[StoredPart]) -> None:
        self.whole = b"".join(self.parts[p.number] for p in parts)

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        self.aborted.append(multipart_id)

    def put_whole(self, key: str, data: memoryview) -> None:
        self.whole = bytes(data)

    def put_incomplete(self, key: str, data: memoryview) -> None:
        self.incomplete[key] = bytes(data)

    def iter_incomplete(self, key: str, size: int) -> Iterator[bytes]:
        yield self.incomplete[key][:size]

    def delete_incomplete(self, key: str) -> None:
        self.incomplete.pop(key, None)


def _row(length: int) -> Resumable:
    now = datetime.now(UTC)
    return Resumable(
        id="a" * 32,
        tenant="t",
        profile_id="b" * 24,
        length=length,
        offset=0,
        file_name="a.png",
        declared_type="image/png",
        metadata=None,
        staging_key="uploads/x",
        multipart_id=None,
        parts=(),
        incomplete_key=None,
        incomplete_size=0,
        expires_at=now,
        created_at=now,
    )


def _reader(data: bytes, fail_after: int | None = None) -> Callable[[int], bytes]:
    pos = 0

    def read(size: int) -> bytes:
        nonlocal pos
        if fail_after is not None and pos >= fail_after:
            raise RequestTimeout("the client went away")
        end = pos + size if fail_after is None else min(pos + size, fail_after)
        chunk = data[pos:end]
        pos += len(chunk)
        return chunk

    return read


def _patch(rows: FakeRows, objects: FakeObjects, data: bytes, **kw: object) -> int:
    writer = ChunkWriter(rows, objects, rows.row, "me", PART, kw.get("checksum"))  # type: ignore[arg-type]
    return writer.write(_reader(data, kw.get("fail_after")), len(data))  # type: ignore[arg-type]


def test_small_chunks_gather_into_parts_and_the_file_arrives_whole() -> None:
    data = bytes(range(50))
    rows, objects = FakeRows(_row(len(data))), FakeObjects()
    for start in range(0, len(data), 7):
        assert _patch(rows, objects, data[start : start + 7]) == min(start + 7, len(data))
    assert objects.whole == data
    assert objects.started == 1
    assert [len(objects.parts[n]) for n in sorted(objects.parts)] == [16, 16, 16, 2]
    # Every incomplete part but none was deleted once a part or the end took its bytes.
    assert objects.incomplete == {}


def test_a_file_smaller_than_a_part_is_one_put() -> None:
    data = b"x" * 10
    rows, objects = FakeRows(_row(10)), FakeObjects()
    _patch(rows, objects, data[:4])
    assert rows.row.incomplete_size == 4
    assert _patch(rows, objects, data[4:]) == 10
    assert objects.whole == data and objects.started == 0


def test_bytes_before_a_drop_are_kept() -> None:
    data = bytes(range(40))
    rows, objects = FakeRows(_row(40)), FakeObjects()
    with pytest.raises(BadRequest):
        _patch(rows, objects, data, fail_after=21)
    # One part committed as it was sent, then the 5 bytes after it as the incomplete part.
    assert rows.commits == [16, 21]
    assert rows.row.incomplete_size == 5
    assert _patch(rows, objects, data[21:]) == 40
    assert objects.whole == data


def test_a_chunk_failing_its_checksum_commits_nothing() -> None:
    data = bytes(range(40))
    rows, objects = FakeRows(_row(40)), FakeObjects()
    wrong = parse_checksum("sha1 " + base64.b64encode(hashlib.sha1(b"no").digest()).decode())
    with pytest.raises(ChecksumMismatch):
        _patch(rows, objects, data[:20], checksum=wrong)
    assert rows.commits == [] and rows.row.offset == 0
    assert objects.aborted == ["mp-1"]  # the multipart upload it started is no one's
    right = parse_checksum("sha1 " + base64.b64encode(hashlib.sha1(data[:20]).digest()).decode())
    assert _patch(rows, objects, data[:20], checksum=right) == 20
    assert rows.commits == [20]  # once, at the end, verified
    assert _patch(rows, objects, data[20:]) == 40
    assert objects.whole == data


def test_a_checksummed_chunk_cut_off_keeps_nothing() -> None:
    data = bytes(range(40))
    rows, objects = FakeRows(_row(40)), FakeObjects()
    summed = parse_checksum("md5 " + base64.b64encode(hashlib.md5(data).digest()).decode())
    with pytest.raises(BadRequest):
        _patch(rows, objects, data, checksum=summed, fail_after=30)
    assert rows.commits == []


def test_metadata_and_checksum_headers() -> None:
    assert parse_metadata("filename YS5wbmc=,name Yi5qcGc=, empty") == {
        "filename": "a.png",
        "name": "b.jpg",
        "empty": "",
    }
    with pytest.raises(BadRequest):
        parse_metadata("filename not*base64")
    assert parse_checksum(None) is None
    with pytest.raises(BadRequest):
        parse_checksum("crc32 AAAA")
    with pytest.raises(BadRequest):
        parse_checksum("sha1 ***")
