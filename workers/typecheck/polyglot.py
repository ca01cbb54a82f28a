"""A raster image that is also another file: data after its end, another file behind a TIFF's
pixel data, or a ZIP directory anywhere in its last 64 KiB."""

from __future__ import annotations

import struct

from core.domain import Reason
from workers.typecheck.markup import find_markup
from workers.typecheck.refusals import Refused
from workers.typecheck.source import SCAN_BYTES, Source, read_at

MAX_PADDING = 16  # zero bytes some encoders leave after the image

_TRAILER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "an appended ZIP archive"),
    (b"%PDF", "an appended PDF document"),
    (b"\x7fELF", "an appended ELF executable"),
    (b"MZ", "an appended Windows executable"),
    (b"Rar!", "an appended RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "an appended 7-Zip archive"),
    (b"\x1f\x8b", "appended gzip data"),
    (b"\x89PNG", "another PNG image"),
    (b"\xff\xd8\xff", "another JPEG image"),
    (b"GIF8", "another GIF image"),
)


def check_after(src: Source, size: int, end: int, name: str) -> None:
    """Refuse what follows the image's end at `end`, beyond a little zero padding."""
    trailing = size - end
    if trailing < 0:
        raise Refused(
            Reason.CORRUPT, f"truncated {name}: the image needs {end} bytes, the file has {size}"
        )
    if trailing == 0:
        return
    sample = read_at(src, end, min(trailing, 4096))
    if trailing <= MAX_PADDING and not sample.strip(b"\0"):
        return
    raise Refused(
        Reason.POLYGLOT,
        f"data after the end of the {name} image ({trailing} bytes): "
        f"looks like {_describe_data(sample)}",
    )


def check_tiff_tail(src: Source, size: int, pixel_data_end: int) -> None:
    """A TIFF has no end marker: IFDs and tag values may legitimately follow the pixel data
    (libtiff writes the IFD last), so what follows the last strip or tile is not refused as
    such. It must not carry another file, though: executables, archives and documents are
    recognised by their signatures (4 bytes or more, so pixel data cannot fake them here —
    this region holds only directory entries and tag values)."""
    start = max(pixel_data_end, size - SCAN_BYTES)
    if start >= size:
        return
    region = read_at(src, start, size - start)
    for signature, description in _TRAILER_SIGNATURES:
        if len(signature) >= 4 and signature in region:
            raise Refused(
                Reason.POLYGLOT,
                f"data after the TIFF image's pixel data looks like {description}",
            )


def _describe_data(data: bytes) -> str:
    stripped = data.lstrip(b"\0 \t\r\n")
    for signature, description in _TRAILER_SIGNATURES:
        if stripped.startswith(signature):
            return description
    if b"<?php" in data.lower():
        return "PHP code"
    if stripped.startswith(b"<") or find_markup(data):
        return "HTML/script markup"
    if b"PK\x03\x04" in data:
        return "an appended ZIP archive"
    return "unidentified data"


def refuse_zip_end(src: Source, tail: bytes, size: int) -> None:
    """Refuse a file whose last bytes, `tail`, hold a ZIP end-of-central-directory record."""
    # Zip readers look for the end-of-central-directory record anywhere in the
    # last 64 KiB, so an archive can be smuggled *inside* an image (a PNG chunk,
    # a JPEG or GIF comment: GIFAR) and still open with unzip or Python's
    # zipfile. A record counts when it is consistent the way those readers need
    # it: its central directory ends right where the record starts and begins
    # with a directory entry. Four bytes turning up by chance in compressed
    # data do not pass that.
    base = size - len(tail)
    at = tail.find(b"PK\x05\x06")
    while at != -1:
        if at + 22 <= len(tail):
            _, disk, cd_disk, on_disk, total, cd_size, _cd_offset, _comment = struct.unpack_from(
                "<4s4H2LH", tail, at
            )
            cd_start = base + at - cd_size
            if (
                disk == cd_disk == 0
                and on_disk == total > 0
                and cd_size >= 46 * total
                and cd_start >= 0
                and read_at(src, cd_start, 4) == b"PK\x01\x02"
            ):
                raise Refused(
                    Reason.POLYGLOT, "the file is also a ZIP archive (it holds a ZIP directory)"
                )
        at = tail.find(b"PK\x05\x06", at + 1)
