"""Structure walks of the newer picture containers: WebP's RIFF, and the ISO base media file
format (ISOBMFF) that HEIF, HEIC and AVIF share. Each reads the picture's dimensions from the
header, so the pixel limit is enforced before a decoder is given the file, and finds where the
structure ends, so data appended after it (a polyglot) is refused like after a PNG's IEND.
Metadata chunks and boxes are scanned for markup on the way; pixel data is skipped.

They raise Truncated and Corrupt without naming the format; the raster check does that.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from workers.typecheck.markup import refuse_markup
from workers.typecheck.refusals import Corrupt, Truncated
from workers.typecheck.source import Reader, Source

# RIFF chunks of pixel data (skipped); every other chunk (EXIF, XMP, ICCP, unknown) is scanned.
_WEBP_PIXELS = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"ANMF"})
# ISOBMFF boxes whose children are boxes, on the way from `meta` to the item properties.
_CONTAINERS = frozenset({b"iprp", b"ipco"})
# Top-level boxes a HEIF or AVIF file may hold: one of these running past the end of the file is
# a truncation; anything else there is data appended after the structure.
_TOP_LEVEL = frozenset(
    {b"ftyp", b"meta", b"mdat", b"free", b"skip", b"moov", b"moof", b"mfra", b"uuid", b"idat"}
)
# A `meta` box this large is not a picture's index: refused rather than read into memory.
_MAX_META = 4 * 1024 * 1024


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    end: int  # where the structure ends: the file should end there


def webp_layout(src: Source) -> Layout:
    """A WebP's canvas size from its first chunk (VP8X, VP8L or VP8), and the RIFF's end."""
    r = Reader(src)
    head = r.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise Corrupt("not a RIFF WEBP file")
    end = 8 + struct.unpack("<I", head[4:8])[0]
    width = height = 0
    first = True
    while r.pos < end:
        kind, length = struct.unpack("<4sI", r.read(8))
        padded = length + (length & 1)
        if r.pos + padded > end:
            raise Corrupt(f"chunk {kind!r} runs past the RIFF's end")
        if first:
            width, height = _webp_canvas(kind, r.peek(min(length, 10)))
            first = False
        if kind in _WEBP_PIXELS:
            r.skip(padded)
        else:
            r.scan(padded)
    if first:
        raise Corrupt("no image chunk")
    return Layout(width, height, end)


def _webp_canvas(kind: bytes, data: bytes) -> tuple[int, int]:
    if kind == b"VP8X" and len(data) >= 10:
        return 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if kind == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[6:10])
        return w & 0x3FFF, h & 0x3FFF
    raise Corrupt(f"first chunk {kind!r} is not an image header")


def isobmff_layout(src: Source, size: int) -> Layout:
    """The largest `ispe` (image spatial extents) among a HEIF/AVIF's item properties — a grid's
    own extent, or its tiles' when it has none — and where its last top-level box ends."""
    r = Reader(src)
    pos = 0
    width = height = 0
    seen_meta = False
    while pos < size:
        header = r.peek(8)
        length, kind = struct.unpack(">I4s", header) if len(header) == 8 else (0, b"")
        if not _box_type(kind):
            # Not a box: whatever follows the structure is judged as appended data.
            break
        r.skip(8)
        body = 8
        if length == 1:
            length = struct.unpack(">Q", r.read(8))[0]
            body = 16
        elif length == 0:
            length = size - pos  # to the end of the file
        if length < body:
            raise Corrupt(f"box {kind!r} of {length} bytes at offset {pos}")
        if pos == 0 and kind != b"ftyp":
            raise Corrupt("the file does not start with an ftyp box")
        if kind == b"meta":
            if length > _MAX_META:
                raise Corrupt(f"a meta box of {length} bytes")
            seen_meta = True
            meta = r.read(length - body)
            refuse_markup(meta, "in the image's metadata")
            for w, h in _extents(meta[4:]):  # meta is a full box
                if w * h > width * height:
                    width, height = w, h
        elif pos + length > size:
            if kind not in _TOP_LEVEL:
                break  # not a box of this format: from `pos` on is appended data
            raise Truncated(size)
        else:
            r.skip(length - body)
        pos += length
    if not seen_meta:
        raise Corrupt("no meta box")
    if not width or not height:
        raise Corrupt("no image extents (ispe) in the meta box")
    return Layout(width, height, pos)


def _box_type(kind: bytes) -> bool:
    """Box types are four printable characters (ftyp, meta, mdat, free, `uuid`...)."""
    return len(kind) == 4 and all(0x20 <= c < 0x7F for c in kind)


def _extents(data: bytes) -> list[tuple[int, int]]:
    """Every ispe under iprp/ipco in a meta box's children."""
    found: list[tuple[int, int]] = []
    pos = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length < 8 or pos + length > len(data):
            raise Corrupt(f"box {kind!r} inside meta runs past it")
        inner = data[pos + 8 : pos + length]
        if kind in _CONTAINERS:
            found += _extents(inner)
        elif kind == b"ispe" and len(inner) >= 12:
            found.append(struct.unpack(">II", inner[4:12]))
        pos += length
    return found
