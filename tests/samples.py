"""Sample files built at run time from Pillow and bytes (nothing harmful is committed), shared by
the unit tests of the type checks and the pipeline's integration tests."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from typing import Any

from PIL import Image


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def solid(fmt: str, size: tuple[int, int] = (40, 30), **options: Any) -> bytes:
    return encode(Image.new("RGB", size, (30, 160, 90)), fmt, **options)


def frames(n: int = 3, size: tuple[int, int] = (40, 40)) -> list[Image.Image]:
    return [Image.new("RGB", size, (80 * i % 256, 40, 200)) for i in range(n)]


def animated(fmt: str, n: int = 3, size: tuple[int, int] = (40, 40)) -> bytes:
    first, *rest = frames(n, size)
    return encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims width x height, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(64)))
        + chunk(b"IEND", b"")
    )


def zip_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("shell.txt", "not an image")
    return buf.getvalue()


def jpeg_with_exif_thumbnail() -> bytes:
    """A JPEG whose APP1 EXIF block carries a complete JPEG thumbnail (its own FFD8..FFD9)."""
    thumbnail = solid("JPEG", (16, 12))
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 1) + struct.pack("<I", 26)
    ifd1_entries = struct.pack("<HHII", 0x0201, 4, 1, 56) + struct.pack(
        "<HHII", 0x0202, 4, 1, len(thumbnail)
    )
    ifd1 = struct.pack("<H", 2) + ifd1_entries + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1
    assert len(tiff) == 56
    payload = b"Exif\x00\x00" + tiff + thumbnail
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    main = encode(noise((64, 48)), "JPEG")
    return main[:2] + app1 + main[2:]


# Crafter's reference table of `fileSize` (shared/crafter-profile-api.md), byte count → text.
CRAFTER_FILE_SIZES: list[tuple[int, str]] = [
    (0, "0"),
    (1000, "1,000 B"),
    (1023, "1,023 B"),
    (1024, "1 KB"),
    (1075, "1 KB"),
    (1280, "1.2 KB"),
    (1792, "1.8 KB"),
    (23193, "22.6 KB"),
    (1048575, "1,024 KB"),
    (1536000, "1.5 MB"),
    (5242880, "5 MB"),
]
