"""Structure walks of PNG, JPEG (with MPO's embedded images), GIF and BMP: where the image
really ends, with every metadata byte on the way scanned for markup.

They raise Truncated and Corrupt without naming the format; the raster check does that.
"""

from __future__ import annotations

import struct

from workers.typecheck.polyglot import check_after
from workers.typecheck.refusals import Corrupt, Truncated
from workers.typecheck.source import Reader, Source


def png_end(r: Reader) -> int:
    if r.read(8) != b"\x89PNG\r\n\x1a\n":
        raise Corrupt("bad signature")
    while True:
        length, kind = struct.unpack(">I4s", r.read(8))
        if length > 0x7FFFFFFF:
            raise Corrupt(f"chunk length {length} at offset {r.pos - 8}")
        if kind == b"IEND":
            r.skip(length)
            r.read(4)  # CRC
            return r.pos
        if kind in (b"IDAT", b"fdAT"):
            r.skip(length + 4)
        else:
            r.scan(length)
            r.skip(4)


def jpeg_frames_end(src: Source, r: Reader, mp_entries: list[dict[str, int]]) -> int:
    """End of the last image of a JPEG, refusing data between the images of an MPO."""
    end, mp_base = _jpeg_end(r)
    if not mp_entries:
        return end
    if mp_base is None:
        raise Corrupt("MPO without an MPF index")
    # Entry 0 is the primary image; the others are addressed relative to the
    # MPF header and should follow it back to back.
    for entry in sorted(mp_entries[1:], key=lambda e: e["DataOffset"]):
        start = mp_base + entry["DataOffset"]
        if start < end:
            raise Corrupt(f"embedded image at offset {start} overlaps the previous one")
        check_after(src, start, end, "JPEG")
        end, _ = _jpeg_end(Reader(src, start))
    return end


def _jpeg_end(r: Reader) -> tuple[int, int | None]:
    """Offset just past the EOI marker of the image starting at r.pos, and the
    offset of its MPF index if it has one.

    Segments are skipped by their length, so an EXIF thumbnail's own SOI..EOI
    inside APP1 is never mistaken for the end of the image.
    """
    if r.read(2) != b"\xff\xd8":
        raise Corrupt(f"no start-of-image marker at offset {r.pos - 2}")
    mp_base: int | None = None
    while True:
        if r.byte() != 0xFF:
            raise Corrupt(f"expected a marker at offset {r.pos - 1}")
        marker = r.byte()
        while marker == 0xFF:  # fill bytes
            marker = r.byte()
        if marker == 0xD9:  # EOI
            return r.pos, mp_base
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no payload
            continue
        if marker in (0x00, 0xD8):
            raise Corrupt(f"unexpected marker 0xff{marker:02x} at offset {r.pos - 2}")
        (length,) = struct.unpack(">H", r.read(2))
        if length < 2:
            raise Corrupt(f"segment length {length} at offset {r.pos - 2}")
        if marker == 0xE2 and r.peek(4) == b"MPF\x00":
            mp_base = r.pos + 4
        r.scan(length - 2)
        if marker == 0xDA:  # SOS: entropy-coded data follows
            _skip_entropy_data(r)


def _skip_entropy_data(r: Reader) -> None:
    """Advance to the next marker: an 0xff not followed by 00 (a stuffed data
    byte), d0-d7 (restart markers belong to the data) or another ff (fill)."""
    while True:
        buf = r.peek_block()
        if len(buf) < 2:
            raise Truncated(r.pos + len(buf))
        i = buf.find(b"\xff")
        while i != -1 and i + 1 < len(buf):
            following = buf[i + 1]
            if following == 0xFF:
                i += 1
            elif following == 0 or 0xD0 <= following <= 0xD7:
                i = buf.find(b"\xff", i + 2)
            else:
                r.skip(i)
                return
        r.skip(len(buf) if i == -1 else i)  # keep a final 0xff for the next round


def gif_end(r: Reader) -> int:
    header = r.read(13)
    if header[:6] not in (b"GIF87a", b"GIF89a"):
        raise Corrupt("bad signature")
    if header[10] & 0x80:
        r.skip(3 << ((header[10] & 7) + 1))  # global colour table
    while True:
        if not r.peek(1):  # a missing trailer hides nothing; old encoders omit it
            return r.pos
        block = r.byte()
        if block == 0x3B:  # trailer
            return r.pos
        if block == 0x21:  # extension: label, then data sub-blocks
            r.byte()
            _gif_sub_blocks(r, scan=True)
        elif block == 0x2C:  # image descriptor
            descriptor = r.read(9)
            if descriptor[8] & 0x80:
                r.skip(3 << ((descriptor[8] & 7) + 1))  # local colour table
            r.byte()  # LZW minimum code size
            _gif_sub_blocks(r, scan=False)
        else:
            raise Corrupt(f"unexpected byte 0x{block:02x} at offset {r.pos - 1}")


def _gif_sub_blocks(r: Reader, *, scan: bool) -> None:
    while length := r.byte():
        if scan:
            r.scan(length)
        else:
            r.skip(length)


def bmp_end(head: bytes) -> int:
    """End of the pixel data (or of an ICC profile stored after it).

    Computed from the dimensions rather than taken from the header's file
    size field, which a polyglot can simply set to cover the appended data.
    """
    if head[:2] == b"BM":
        offset, header_size = struct.unpack_from("<I I", head, 10)
        info = 14
    else:  # DIB: no file header
        offset, header_size, info = 0, struct.unpack_from("<I", head)[0], 0
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bpp = struct.unpack_from("<HHHH", head, info + 4)
        compression = image_size = 0
    else:
        width, height, _, bpp, compression, image_size = struct.unpack_from(
            "<iiHHII", head, info + 4
        )
    if compression in (0, 3, 6):  # uncompressed / bit fields
        end = offset + ((abs(width) * bpp + 31) // 32) * 4 * abs(height)
    else:  # RLE: only the header knows
        end = offset + image_size
    if header_size >= 124:
        (cs_type,) = struct.unpack_from("<I", head, info + 56)
        if cs_type == 0x4D424544:  # PROFILE_EMBEDDED ('MBED')
            profile_offset, profile_size = struct.unpack_from("<II", head, info + 112)
            end = max(end, info + profile_offset + profile_size)
    return end
