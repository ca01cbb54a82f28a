"""Reading the stored file: few, large, range-friendly reads, and a read failure never
mistaken for bad content."""

from __future__ import annotations

from typing import BinaryIO

from workers.typecheck.markup import MARKUP_OVERLAP, refuse_markup
from workers.typecheck.refusals import Truncated

SCAN_BYTES = 64 * 1024  # how much of each end, and of each metadata piece, is scanned at once
_BLOCK = 256 * 1024


class Source:
    """Wraps the caller's stream and remembers whether it failed.

    Pillow reports bad data and failed reads alike as OSError; knowing which one
    happened keeps a storage hiccup from becoming a permanent refusal.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read(n)
        except BaseException as exc:
            self.error = exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._stream.seek(offset, whence)
        except BaseException as exc:
            self.error = exc
            raise

    def tell(self) -> int:
        return self._stream.tell()


def read_at(src: Source, offset: int, n: int) -> bytes:
    src.seek(offset)
    parts: list[bytes] = []
    while n > 0:
        chunk = src.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class Reader:
    """Sequential reads in large blocks, so that walking a file's structure
    costs a few range requests rather than one per chunk or segment."""

    def __init__(self, src: Source, offset: int = 0) -> None:
        self._src = src
        self._buf = b""
        self._start = offset  # file offset of _buf[0]
        self._i = 0

    @property
    def pos(self) -> int:
        return self._start + self._i

    def peek(self, n: int) -> bytes:
        """Up to n bytes at the current position; fewer only at end of file."""
        if len(self._buf) - self._i < n:
            self._buf = self._buf[self._i :]
            self._start += self._i
            self._i = 0
            self._buf += read_at(
                self._src, self._start + len(self._buf), max(n - len(self._buf), _BLOCK)
            )
        return self._buf[self._i : self._i + n]

    def peek_block(self) -> bytes:
        """As much as one block from the current position, for scans that look for a byte."""
        return self.peek(_BLOCK)

    def read(self, n: int) -> bytes:
        data = self.peek(n)
        if len(data) < n:
            raise Truncated(self.pos + len(data))
        self._i += n
        return data

    def byte(self) -> int:
        return self.read(1)[0]

    def skip(self, n: int) -> None:
        if n <= len(self._buf) - self._i:
            self._i += n
        else:  # past the buffer: let the next read start there
            self._start, self._buf, self._i = self.pos + n, b"", 0

    def scan(self, n: int) -> None:
        """Consume n bytes of metadata, refusing markup found in them."""
        carry = b""
        while n > 0:
            piece = self.read(min(n, SCAN_BYTES))
            n -= len(piece)
            refuse_markup(carry + piece, "in the image's metadata")
            carry = piece[-MARKUP_OVERLAP:]
