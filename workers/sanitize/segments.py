"""Lossless metadata removal, at the level of each format's own structure: JPEG segments, PNG
chunks, GIF extensions. The pixels' bytes are copied as they are, so a file with nothing to
remove comes back as None (served byte for byte) and one with something to remove loses only
that. Orientation is not handled here: a picture whose orientation lives in a tag goes through
the decoder (core/pictures/pixels.py).

Each walker trusts that the verify step has already walked the same structure (a truncated or
malformed file never gets here); a surprise is still a ValueError, never a silent pass-through.
"""

from __future__ import annotations

import struct

# --- JPEG ---------------------------------------------------------------------------------------

_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
# Application segments that are part of how the picture looks, kept: JFIF's header, the ICC
# profile, Adobe's colour transform flag. Every other APPn (EXIF and its thumbnail, XMP, IPTC in
# Photoshop's APP13, MPF, FlashPix, Ducky, ...) and every comment is metadata.
_KEEP_APP: dict[int, tuple[bytes, ...]] = {
    0xE0: (b"JFIF\0",),
    0xE2: (b"ICC_PROFILE\0",),
    0xEE: (b"Adobe",),
}


def jpeg_strip(data: bytes) -> bytes | None:
    """The JPEG without its metadata segments and without anything after its first image's EOI
    (the extra images of an MPO, whose index was in an APP2 segment that goes too); None when
    there is nothing to remove."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out: list[bytes] = [data[:2]]
    removed = False
    pos = 2
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at offset {pos}")
        start = pos
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise ValueError("truncated JPEG")
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out.append(data[start:pos])
            removed = removed or pos < n
            break
        if marker in _STANDALONE or marker == _SOI:
            out.append(data[start:pos])
            continue
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        end = pos + length
        if length < 2 or end > n:
            raise ValueError(f"segment {marker:#x} runs past the end")
        if marker == _COM or (0xE0 <= marker <= 0xEF and not _kept(marker, data[pos + 2 : end])):
            removed = True
            pos = end
            continue
        if marker == _SOS:
            end = _entropy_end(data, end)
        out.append(data[start:end])
        pos = end
    return b"".join(out) if removed else None


def _kept(marker: int, payload: bytes) -> bool:
    return any(payload.startswith(sig) for sig in _KEEP_APP.get(marker, ()))


def _entropy_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data after a scan header ends: the next marker that is neither a
    stuffed 0xFF00 nor a restart marker."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise ValueError("scan data runs past the end")
        following = data[pos + 1]
        if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos


# --- PNG ----------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary chunks that are how the picture looks (colour, transparency, background, pixel
# size, APNG's animation) are kept; every other ancillary chunk goes: text (author, address,
# software, comments), EXIF, the time of the last edit, and any private chunk an application
# wrote (whatever it holds). Critical chunks (upper-case first letter) are the image itself.
_PNG_KEEP_ANCILLARY = frozenset(
    {
        b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP", b"mDCV", b"cLLI",
        b"bKGD", b"hIST", b"pHYs", b"sPLT", b"acTL", b"fcTL", b"fdAT",
    }
)  # fmt: skip


def png_strip(data: bytes) -> bytes | None:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    out: list[bytes] = [_PNG_SIGNATURE]
    removed = False
    pos = len(_PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"chunk {kind!r} runs past the end")
        if kind[:1].islower() and kind not in _PNG_KEEP_ANCILLARY:
            removed = True
        else:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            removed = removed or pos < len(data)
            break
    return b"".join(out) if removed else None


# --- GIF ----------------------------------------------------------------------------------------

# Application extensions that are playback, not metadata: the loop count.
_GIF_KEEP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def gif_strip(data: bytes) -> bytes | None:
    """The GIF without comment extensions and application extensions other than the loop count
    (XMP travels in one)."""
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("not a GIF")
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    out: list[bytes] = [data[:pos]]
    removed = False
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            out.append(data[pos : pos + 1])
            removed = removed or pos + 1 < len(data)
            break
        if introducer == 0x21:
            label = data[pos + 1]
            end = _sub_blocks_end(data, pos + 2)
            block = data[pos:end]
            app_id = data[pos + 3 : pos + 3 + data[pos + 2]] if label == 0xFF else b""
            if label == 0xFE or (label == 0xFF and app_id not in _GIF_KEEP_APPS):
                removed = True
            else:
                out.append(block)
            pos = end
        elif introducer == 0x2C:
            flags = data[pos + 9]
            header_end = pos + 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            end = _sub_blocks_end(data, header_end + 1)  # +1: the LZW minimum code size
            out.append(data[pos:end])
            pos = end
        else:
            raise ValueError(f"unknown GIF block {introducer:#x} at offset {pos}")
    return b"".join(out) if removed else None


def _sub_blocks_end(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise ValueError("GIF data runs past the end")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


# --- WebP ---------------------------------------------------------------------------------------

# RIFF chunks of metadata, and the VP8X flag bits that announce them.
_WEBP_METADATA = {b"EXIF": 0x08, b"XMP ": 0x04}


def webp_strip(data: bytes) -> bytes | None:
    """The WebP without its EXIF and XMP chunks, the extended header's flags cleared to match
    and the RIFF size recomputed; the ICC profile (ICCP) and every image chunk are kept as they
    are. None when there is nothing to remove."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP")
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    chunks: list[bytearray] = []
    removed = 0
    pos = 12
    while pos + 8 <= end:
        kind, length = struct.unpack("<4sI", data[pos : pos + 8])
        stop = pos + 8 + length + (length & 1)
        if stop > end:
            raise ValueError(f"chunk {kind!r} runs past the RIFF's end")
        if kind in _WEBP_METADATA:
            removed |= _WEBP_METADATA[kind]
        else:
            chunks.append(bytearray(data[pos:stop]))
        pos = stop
    if not removed:
        return None
    for chunk in chunks:
        if chunk[:4] == b"VP8X":
            chunk[8] &= ~removed & 0xFF
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
