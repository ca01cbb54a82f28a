"""One pass over an incoming stream: digests, byte count, size limit and the head for sniffing."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

from attachd.errors import BadRequest, RequestTimeout, UploadTooLarge


class HashingReader(io.RawIOBase):
    """Wraps a `read(n)` callable. Every byte that passes is counted and hashed (md5, sha256);
    the first `head_size` bytes are kept; going over `limit` raises UploadTooLarge mid-stream,
    so an oversized body is refused without being read whole."""

    def __init__(self, read: Callable[[int], bytes], limit: int, head_size: int = 4096) -> None:
        self._read = read
        self._limit = limit
        self._head_size = head_size
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.head = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # The SDK asks for whole parts; filling the request here keeps its buffer appends few.
        if size is None or size < 0:
            size = 1 << 20
        chunks = []
        want = size
        while want > 0:
            try:
                chunk = self._read(min(want, 1 << 20))
            except TimeoutError as exc:
                raise RequestTimeout("The client stopped sending the request body") from exc
            except OSError as exc:
                raise BadRequest(f"The request body could not be read: {exc}") from exc
            if not chunk:
                break
            self._take(chunk)
            chunks.append(chunk)
            want -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise UploadTooLarge(self._limit)
        if len(self.head) < self._head_size:
            self.head += chunk[: self._head_size - len(self.head)]
        self.md5.update(chunk)
        self.sha256.update(chunk)
