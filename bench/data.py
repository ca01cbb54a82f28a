"""Deterministic test data made on the fly, so both sides of a comparison get the same bytes and a
2 GiB body is never held in memory."""

from __future__ import annotations

import io
import random
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator

BLOCK = 1 << 20


def _png_head(width: int = 4096, height: int = 4096) -> bytes:
    """A PNG signature and IHDR chunk: enough for the API's sniff to take the body for a PNG.
    What follows is not image data, so the pipeline would reject the file; B1 never runs it."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


PNG_HEAD = _png_head()


class Pattern:
    """`size` deterministic bytes: a seeded random MiB, repeated with each MiB stamped with its
    index so that no two are equal, optionally starting with `head`."""

    def __init__(self, size: int, seed: int = 0, head: bytes = b"") -> None:
        self.size = size
        self.head = head
        self._base = random.Random(seed).randbytes(BLOCK)

    def _block(self, index: int) -> bytes:
        stamped = struct.pack(">Q", index) + self._base[8:]
        if index == 0 and self.head:
            stamped = self.head + stamped[len(self.head) :]
        return stamped

    def chunks(self) -> Iterator[bytes]:
        """The bytes in 1 MiB chunks (the last one shorter)."""
        left = self.size
        index = 0
        while left > 0:
            block = self._block(index)
            yield block if left >= BLOCK else block[:left]
            left -= BLOCK
            index += 1

    def reader(self) -> PatternReader:
        return PatternReader(self.chunks())


class PatternReader(io.RawIOBase):
    """A file object over chunks, returning exactly what read(n) asks for (as a real file would)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = BLOCK if size is None or size < 0 else size
        parts = [self._rest] if self._rest else []
        have = len(self._rest)
        while have < want:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._rest = data[want:]
        return data[:want] if len(data) > want else data


class MultipartBody:
    """A multipart/form-data body with one file part, streamed from chunks. Its exact length is
    known up front, so requests sends a Content-Length rather than a chunked body (the API derives
    the upload's deadline from it)."""

    def __init__(
        self,
        filename: str,
        size: int,
        chunks: Callable[[], Iterator[bytes]],
        on_chunk: Callable[[int], object] | None = None,
        field: str = "attachment",
    ) -> None:
        self.boundary = uuid.uuid4().hex
        self._pre = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._post = f"\r\n--{self.boundary}--\r\n".encode()
        self._size = size
        self._chunks = chunks
        self._on_chunk = on_chunk

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._pre) + self._size + len(self._post)

    def __iter__(self) -> Iterator[bytes]:
        yield self._pre
        for chunk in self._chunks():
            yield chunk
            if self._on_chunk is not None:
                self._on_chunk(len(chunk))
        yield self._post


def noise_pngs(count: int, size: int, seed: int = 1) -> list[bytes]:
    """`count` distinct PNGs of random RGB noise, each about `size` bytes (noise does not
    compress, so the pixel count sets the size). They decode cleanly: the pipeline attaches them."""
    from PIL import Image

    rng = random.Random(seed)
    side = max(1, int((size / 3) ** 0.5))
    images = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(
            buf, "PNG", compress_level=1
        )
        images.append(buf.getvalue())
    return images
