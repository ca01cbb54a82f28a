"""One pass over an incoming stream: digests, byte count, size limit and the head for sniffing."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from core.errors import BadRequest, RequestTimeout, UploadTooLarge

# Blocks at least this large are hashed on a helper thread while the next one is read; smaller
# ones (a whole small upload) are hashed in place, where a hand-over would cost more than it saves.
_BACKGROUND_MIN = 256 * 1024

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _hash_pool() -> ThreadPoolExecutor:
    # Created on first use, so in the gunicorn worker after the fork, never in the master.
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="attachd-hash")
        return _pool


def _forget_pool() -> None:
    # A forked child has the pool object but none of its threads.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


class HashingReader(io.RawIOBase):
    """Wraps a `read(n)` callable. Every byte that passes is counted and hashed (md5, sha256);
    the first `head_size` bytes are kept; going over `limit` raises UploadTooLarge mid-stream,
    so an oversized body is refused without being read whole.

    md5 and sha256 of a large block run on helper threads (hashlib releases the GIL), side by
    side and while the caller reads the next block, instead of one after the other in the request
    thread: profiled on a 1 GiB upload, hashing was 40% of that thread's time. The digests are
    complete whenever `md5` or `sha256` is read."""

    def __init__(self, read: Callable[[int], bytes], limit: int, head_size: int = 4096) -> None:
        self._read = read
        self._limit = limit
        self._head_size = head_size
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._pending: list[Future[Any]] = []
        self.size = 0
        self.head = b""

    @property
    def md5(self) -> Any:
        self._settle()
        return self._md5

    @property
    def sha256(self) -> Any:
        self._settle()
        return self._sha256

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
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
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._hash(data)
        return data

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

    def _hash(self, data: bytes) -> None:
        self._settle()  # blocks are hashed in order: the previous one first
        if len(data) < _BACKGROUND_MIN:
            self._md5.update(data)
            self._sha256.update(data)
            return
        # Shared with the caller, not copied: bytes are immutable (bytes() copies only a buffer
        # that someone could still change under the helpers).
        data = bytes(data)
        pool = _hash_pool()
        self._pending = [
            pool.submit(self._md5.update, data),
            pool.submit(self._sha256.update, data),
        ]

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
