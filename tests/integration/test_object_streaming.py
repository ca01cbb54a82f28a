"""ObjectStore.put_stream against the real MinIO: every size around the part boundaries stores the
same bytes, short reads are fine, and a reader that fails leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from core.errors import ObjectMissing, UploadTooLarge
from core.settings import Settings
from storage.objects import ObjectStore
from tests.integration.sdk_support import object_tags, put_bytes

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024  # the smallest part S3 allows


class Trickle(io.RawIOBase):
    """Returns at most `step` bytes per read, as a socket-backed stream may; optionally raises
    once `fail_after` bytes have gone."""

    def __init__(self, data: bytes, step: int, fail_after: int | None = None) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._fail_after is not None and self._pos >= self._fail_after:
            raise UploadTooLarge(self._fail_after)
        n = min(size if size >= 0 else self._step, self._step)
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


def _stored(objects: ObjectStore, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in objects.iter_range(bucket, key):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize(
    "size",
    [0, 100, PART - 1, PART, PART + 1, 2 * PART, 2 * PART + 12345, 5 * PART + 7],
)
def test_every_size_is_stored_whole(objects: ObjectStore, settings: Settings, size: int) -> None:
    data = random.Random(size).randbytes(size)
    for reader_name, reader in (
        ("file", io.BytesIO(data)),
        ("trickle", Trickle(data, 700 * 1024)),
    ):
        key = f"stream/{size}-{reader_name}"
        objects.put_stream(settings.bucket_staging, key, reader, "image/png", PART)  # type: ignore[arg-type]
        info = objects.stat(settings.bucket_staging, key)
        assert info.size == size
        assert info.content_type == "image/png"
        assert _stored(objects, settings.bucket_staging, key) == hashlib.sha256(data).hexdigest()
        objects.delete(settings.bucket_staging, key)


def test_a_reader_that_fails_mid_stream_leaves_nothing(
    objects: ObjectStore, settings: Settings
) -> None:
    data = random.Random(7).randbytes(4 * PART)
    key = "stream/failing"
    reader = Trickle(data, 1024 * 1024, fail_after=2 * PART + PART // 2)
    with pytest.raises(UploadTooLarge):
        objects.put_stream(settings.bucket_staging, key, reader, "image/png", PART)  # type: ignore[arg-type]
    assert not objects.exists(settings.bucket_staging, key)
    # The multipart upload was aborted, not left to the lifecycle rule.
    pending = objects.client._list_multipart_uploads(settings.bucket_staging, prefix=key)
    assert not list(pending.uploads)


@pytest.mark.parametrize("size", [1, 64 * 1024, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024])
def test_open_reader_reads_and_seeks_like_a_file(
    objects: ObjectStore, settings: Settings, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    key = f"reader/{size}"
    put_bytes(objects, settings.bucket_staging, key, data, "image/png")
    with objects.open_reader(settings.bucket_staging, key, size) as f:
        assert f.read(10) == data[:10]
        f.seek(-min(size, 100), io.SEEK_END)
        assert f.read() == data[-100:]
        f.seek(0)
        assert f.read() == data
    objects.delete(settings.bucket_staging, key)


def test_copy_keeps_bytes_replaces_tags_and_reports_a_missing_source(
    objects: ObjectStore, settings: Settings
) -> None:
    data = random.Random(3).randbytes(300 * 1024)
    src, dst = "copy/src", "copy/dst"
    put_bytes(objects, settings.bucket_staging, src, data, "image/png")
    objects.copy(settings.bucket_staging, src, settings.bucket_quarantine, dst, tags={"a": "b"})
    assert b"".join(objects.iter_range(settings.bucket_quarantine, dst)) == data
    assert object_tags(objects, settings.bucket_quarantine, dst) == {"a": "b"}
    objects.delete(settings.bucket_quarantine, dst)
    objects.delete(settings.bucket_staging, src)
    with pytest.raises(ObjectMissing):
        objects.copy(settings.bucket_staging, src, settings.bucket_quarantine, dst)
