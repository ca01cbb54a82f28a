"""The object store as dicts of bytes, for the in-process API tests (tests/api) and the pipeline's
unit tests (tests/unit): the methods of storage/objects.py's ObjectStore that they reach, with its
errors, and counters of what was read."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from core.errors import ObjectMissing
from storage.objects import Buckets, ObjectInfo


class FakeObjects:
    def __init__(self, buckets: Buckets | None = None) -> None:
        self._buckets = buckets or Buckets("staging", "attachments", "quarantine")
        self.data: dict[tuple[str, str], bytes] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        # What put_bytes was given beside the bytes (renditions): content type and metadata.
        self.metadata: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.puts: list[str] = []  # keys put by put_bytes, in order
        # GETs of object contents, and the objects `holding` keeps in memory meanwhile.
        self.reads = 0
        self.held: set[tuple[str, str]] = set()

    @property
    def buckets(self) -> Buckets:
        return self._buckets

    def ping(self) -> None:
        pass

    def _get(self, bucket: str, key: str) -> bytes:
        if (bucket, key) not in self.data:
            raise ObjectMissing(f"{bucket}/{key}")
        if (bucket, key) not in self.held:
            self.reads += 1
        return self.data[(bucket, key)]

    def put_stream(
        self, bucket: str, key: str, reader: BinaryIO, content_type: str, part_size: int
    ) -> str:
        """Reads its reader to the end, a part at a time, as the real one does."""
        chunks = []
        while chunk := reader.read(part_size):
            chunks.append(chunk)
        self.data[(bucket, key)] = b"".join(chunks)
        return "etag"

    @contextmanager
    def holding(self, bucket: str, key: str, size: int) -> Iterator[None]:
        self._get(bucket, key)
        self.held.add((bucket, key))
        try:
            yield
        finally:
            self.held.discard((bucket, key))

    def copy(
        self, sb: str, sk: str, db: str, dk: str, *, tags: dict[str, str] | None = None
    ) -> None:
        if (sb, sk) not in self.data:
            raise ObjectMissing(sk)
        self.data[(db, dk)] = self.data[(sb, sk)]
        if tags:
            self.tags[(db, dk)] = tags

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> None:
        self.data[(bucket, key)] = data
        self.metadata[(bucket, key)] = (content_type, dict(metadata))
        self.puts.append(key)

    def delete(self, bucket: str, key: str) -> None:
        self.data.pop((bucket, key), None)

    def delete_version(self, bucket: str, key: str) -> None:
        """The version's file and everything stored under `<key>@` (its renditions)."""
        for b, k in list(self.data):
            if b == bucket and (k == key or k.startswith(f"{key}@")):
                del self.data[(b, k)]

    def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.data

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        if (bucket, key) not in self.data:
            raise ObjectMissing(f"{bucket}/{key}")
        content_type, metadata = self.metadata.get((bucket, key), ("application/octet-stream", {}))
        return ObjectInfo(len(self.data[(bucket, key)]), "etag", content_type, None, metadata)

    def iter_range(
        self, bucket: str, key: str, offset: int = 0, length: int = 0
    ) -> Iterator[bytes]:
        data = self._get(bucket, key)
        yield data[offset : offset + length] if length else data[offset:]

    def read_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        return self._get(bucket, key)[offset : offset + length]

    def open_reader(self, bucket: str, key: str, size: int) -> io.BytesIO:
        return io.BytesIO(self._get(bucket, key))

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, datetime | None]]:
        """Every object a day old: old enough for the reconciler's orphan sweep."""
        old = datetime.now(UTC) - timedelta(days=1)
        for b, k in list(self.data):
            if b == bucket and k.startswith(prefix):
                yield k, old

    def keys(self, bucket: str) -> list[str]:
        return sorted(k for b, k in self.data if b == bucket)
